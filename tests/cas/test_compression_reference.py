"""The float codec against a plain reference of the stored format (docs/format.md).

The reference below encodes and decodes ZSTD_FLOAT content with Python byte slicing, one
element byte at a time in effect: no numpy, no scratch buffers, no alignment tricks. Blobs
it writes stand for blobs already in stores; the codec must decode them to the same bytes
at every output address (a CDC chunk puts its elements at any address), and what the
codec writes must decode with the reference.
"""

from __future__ import annotations

import numpy as np
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from weightvault.cas.compression import (
    ByteLayout,
    Codec,
    FloatKind,
    Region,
    decode_chunk,
    decode_chunk_into,
    encode_chunk,
)

KIND_ORDER = (FloatKind.BF16, FloatKind.F16, FloatKind.F32)

#: Bit patterns that must survive untouched: +-inf, quiet and signalling NaNs with
#: payloads, the smallest and largest denormals, -0, the largest finite value.
SPECIALS = {
    FloatKind.BF16: [0x7F80, 0xFF80, 0x7FC0, 0xFFC1, 0x7F81, 0x0001, 0x007F, 0x8000, 0x7F7F],
    FloatKind.F16: [0x7C00, 0xFC00, 0x7E00, 0xFE01, 0x7C01, 0x0001, 0x03FF, 0x8000, 0x7BFF],
    FloatKind.F32: [
        0x7F800000,
        0xFF800000,
        0x7FC00000,
        0xFFC00001,
        0x7F800001,
        0x00000001,
        0x007FFFFF,
        0x80000000,
        0x7F7FFFFF,
    ],
}


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def reference_encode(raw: bytes, regions: list[Region]) -> bytes:
    """A ZSTD_FLOAT blob as docs/format.md defines it (any region sizes, no size floor)."""
    header = _varint(len(regions))
    prev = 0
    for r in regions:
        header += _varint(r.start - prev) + _varint(r.count) + bytes([int(r.kind)])
        prev = r.end
    starts = [0] + [r.end for r in regions]
    ends = [r.start for r in regions] + [len(raw)]
    outside = b"".join(raw[a:b] for a, b in zip(starts, ends, strict=True))
    planes = b""
    for kind in KIND_ORDER:
        elements = b"".join(raw[r.start : r.end] for r in regions if r.kind is kind)
        planes += b"".join(elements[j :: kind.itemsize] for j in range(kind.itemsize))
    content = header + outside + planes
    return zstandard.ZstdCompressor(level=3, write_checksum=True, write_content_size=True).compress(content)


def _get_varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7


def reference_decode(stored: bytes, raw_len: int) -> bytes:
    """Inverse of :func:`reference_encode`, for trusted input."""
    content = zstandard.ZstdDecompressor().decompress(stored)
    n, pos = _get_varint(content, 0)
    regions = []
    prev = 0
    for _ in range(n):
        gap, pos = _get_varint(content, pos)
        count, pos = _get_varint(content, pos)
        r = Region(prev + gap, count, FloatKind(content[pos]))
        pos += 1
        regions.append(r)
        prev = r.end
    body = content[pos:]
    assert len(body) == raw_len
    out = bytearray(raw_len)
    p = 0
    starts = [0] + [r.end for r in regions]
    ends = [r.start for r in regions] + [raw_len]
    for a, b in zip(starts, ends, strict=True):
        out[a:b] = body[p : p + b - a]
        p += b - a
    for kind in KIND_ORDER:
        rs = [r for r in regions if r.kind is kind]
        total = sum(r.nbytes for r in rs)
        elements = bytearray(total)
        count = total // kind.itemsize
        for j in range(kind.itemsize):
            elements[j :: kind.itemsize] = body[p + j * count : p + (j + 1) * count]
        p += total
        q = 0
        for r in rs:
            out[r.start : r.end] = elements[q : q + r.nbytes]
            q += r.nbytes
    return bytes(out)


def element_bytes(kind: FloatKind, count: int, mode: str, seed: int) -> bytes:
    """``count`` elements of ``kind``: weight-like, random bits, or special values mixed in."""
    rng = np.random.default_rng(seed)
    bits = 8 * kind.itemsize
    if mode == "random":
        values = rng.integers(0, 1 << bits, count, dtype=np.uint64)
    else:
        x = (rng.standard_normal(count) * 0.02).astype("<f4")
        if kind is FloatKind.F32:
            values = x.view("<u4").astype(np.uint64)
        elif kind is FloatKind.F16:
            values = x.astype("<f2").view("<u2").astype(np.uint64)
        else:
            values = (x.view("<u4") >> 16).astype(np.uint64)
    if mode == "specials":
        where = rng.random(count) < 0.3
        values[where] = rng.choice(np.array(SPECIALS[kind], dtype=np.uint64), int(where.sum()))
    return values.astype(f"<u{kind.itemsize}").tobytes()


@st.composite
def raw_and_regions(draw: st.DrawFn) -> tuple[bytes, list[Region]]:
    """Mixed kinds in any order, odd counts down to one element, regions at any offset."""
    parts = [draw(st.binary(max_size=7))]
    pos = len(parts[0])
    regions: list[Region] = []
    for _ in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(list(FloatKind)))
        count = draw(st.one_of(st.integers(1, 9), st.integers(10, 5000)))
        mode = draw(st.sampled_from(["weights", "random", "specials"]))
        data = element_bytes(kind, count, mode, draw(st.integers(0, 1000)))
        gap = draw(st.binary(max_size=5))
        regions.append(Region(pos, count, kind))
        parts += [data, gap]
        pos += len(data) + len(gap)
    return b"".join(parts), regions


def _decode_at_every_phase(codec: int, stored: bytes, raw: bytes) -> None:
    assert decode_chunk(codec, stored, len(raw)) == raw
    for shift in range(4):  # the output at each address modulo the widest element
        buf = bytearray(len(raw) + 8)
        view = memoryview(buf)[shift : shift + len(raw)]
        decode_chunk_into(codec, stored, view)
        assert bytes(view) == raw
        assert not any(buf[:shift]) and not any(buf[shift + len(raw) :])  # nothing outside


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw_and_regions())
def test_reference_blobs_decode_to_the_same_bytes(case: tuple[bytes, list[Region]]) -> None:
    raw, regions = case
    stored = reference_encode(raw, regions)
    assert reference_decode(stored, len(raw)) == raw
    _decode_at_every_phase(Codec.ZSTD_FLOAT, stored, raw)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw_and_regions())
def test_codec_blobs_decode_with_the_reference(case: tuple[bytes, list[Region]]) -> None:
    raw, regions = case
    codec, stored = encode_chunk(raw, ByteLayout(tuple(regions)))
    if codec == Codec.ZSTD_FLOAT:
        assert reference_decode(stored, len(raw)) == raw
    _decode_at_every_phase(codec, stored, raw)


@pytest.mark.parametrize("kind", list(FloatKind))
@pytest.mark.parametrize("offset", [0, 1, 2, 3])
def test_large_region_at_every_offset(kind: FloatKind, offset: int) -> None:
    """A region as a 1 MiB push chunk holds it: several zstd blocks per plane."""
    count = (1 << 20) // kind.itemsize - 1
    raw = bytes(range(offset)) + element_bytes(kind, count, "specials", seed=offset) + b"\xff" * 3
    stored = reference_encode(raw, [Region(offset, count, kind)])
    _decode_at_every_phase(Codec.ZSTD_FLOAT, stored, raw)
    codec, mine = encode_chunk(raw, ByteLayout((Region(offset, count, kind),)))
    assert codec == Codec.ZSTD_FLOAT
    assert reference_decode(mine, len(raw)) == raw
