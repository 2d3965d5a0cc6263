"""The float codecs against a plain reference of the stored format (docs/format.md).

The reference below encodes and decodes ZSTD_FLOAT (codec 2) and FLOAT_PLANES (codec 3)
blobs with Python byte slicing, one element byte at a time in effect: no numpy, no scratch
buffers, no alignment tricks. Blobs it writes stand for blobs already in stores; the codec
must decode them to the same bytes at every output address (a CDC chunk puts its elements
at any address), and what the codec writes must decode with the reference. Codec 2 is no
longer written by pushes; its writer is still reached with ``float_codec=ZSTD_FLOAT``.
"""

from __future__ import annotations

import functools
import struct

import numpy as np
import pytest
import xxhash
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from weightvault.cas.compression import (
    MIN_GROUP_ELEMENTS,
    ByteLayout,
    Codec,
    FloatKind,
    Region,
    decode_chunk,
    decode_chunk_into,
    encode_chunk,
)

KIND_ORDER = (FloatKind.BF16, FloatKind.F16, FloatKind.F32)

#: The codec-2 writer (pushes write codec 3).
encode_v2 = functools.partial(encode_chunk, float_codec=Codec.ZSTD_FLOAT)

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


def reference_content(raw: bytes, regions: list[Region]) -> bytes:
    """``header | transformed`` as docs/format.md defines it (any region sizes, no size floor)."""
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
    return header + outside + planes


def reference_encode(raw: bytes, regions: list[Region]) -> bytes:
    """A ZSTD_FLOAT blob as docs/format.md defines it."""
    content = reference_content(raw, regions)
    return zstandard.ZstdCompressor(level=3, write_checksum=True, write_content_size=True).compress(content)


def frame_blocks(stored: bytes) -> tuple[int, int, list[tuple[int, int]]]:
    """Walk one zstd frame by RFC 8878: its declared content size, its window and its blocks as
    (type, size), checking what any decoder relies on (one last block, at the end; block sizes;
    the checksum is XXH64 of the content, which the caller compares)."""
    assert stored[:4] == b"\x28\xb5\x2f\xfd"
    fhd = stored[4]
    assert fhd & 0x04 and not fhd & 0x1B  # checksum; no dictionary; reserved bits clear
    single, fcs_flag = fhd & 0x20, fhd >> 6
    pos = 5 + (0 if single else 1)
    width = [1 if single else 0, 2, 4, 8][fcs_flag]
    size = int.from_bytes(stored[pos : pos + width], "little") + (256 if width == 2 else 0)
    wd = stored[5]
    window = size if single else (1 << (10 + (wd >> 3))) * (8 + (wd & 7)) // 8
    pos += width
    blocks: list[tuple[int, int]] = []
    while True:
        bh = int.from_bytes(stored[pos : pos + 3], "little")
        btype, bsize, last = (bh >> 1) & 3, bh >> 3, bh & 1
        assert btype != 3 and bsize <= min(window, 128 << 10)
        blocks.append((btype, bsize))
        pos += 3 + (1 if btype == 1 else bsize)
        if last:
            break
    assert pos + 4 == len(stored)
    return size, window, blocks


def assert_frame_of(stored: bytes, content: bytes) -> list[tuple[int, int]]:
    """``stored`` is one well-formed zstd frame of ``content``, decodable in a 128 KiB window
    (as frames zstd writes with the codec's parameters); returns its blocks."""
    size, window, blocks = frame_blocks(stored)
    assert size == len(content) and window == 128 << 10
    assert stored[-4:] == (xxhash.xxh64_intdigest(content) & 0xFFFFFFFF).to_bytes(4, "little")
    assert zstandard.ZstdDecompressor().decompress(stored) == content
    return blocks


def _get_varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7


def _reference_regions(buf: bytes) -> tuple[list[Region], int]:
    """The region table that starts codec 2's content and codec 3's blob alike, and where it ends."""
    n, pos = _get_varint(buf, 0)
    regions = []
    prev = 0
    for _ in range(n):
        gap, pos = _get_varint(buf, pos)
        count, pos = _get_varint(buf, pos)
        r = Region(prev + gap, count, FloatKind(buf[pos]))
        pos += 1
        regions.append(r)
        prev = r.end
    return regions, pos


def reference_decode(stored: bytes, raw_len: int) -> bytes:
    """Inverse of :func:`reference_encode`, for trusted input."""
    content = zstandard.ZstdDecompressor().decompress(stored)
    regions, pos = _reference_regions(content)
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


def plain_bytes() -> st.SearchStrategy[bytes]:
    """Bytes outside the regions: a few odd ones, or a run long enough to be worth compressing."""
    return st.one_of(st.binary(max_size=7), st.integers(1024, 3000).map(bytes))


@st.composite
def raw_and_regions(draw: st.DrawFn) -> tuple[bytes, list[Region]]:
    """Mixed kinds in any order, odd counts down to one element, regions at any offset."""
    parts = [draw(plain_bytes())]
    pos = len(parts[0])
    regions: list[Region] = []
    for _ in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(list(FloatKind)))
        count = draw(st.one_of(st.integers(1, 9), st.integers(10, 5000)))
        mode = draw(st.sampled_from(["weights", "random", "specials"]))
        data = element_bytes(kind, count, mode, draw(st.integers(0, 1000)))
        gap = draw(plain_bytes())
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
    codec, stored = encode_v2(raw, ByteLayout(tuple(regions)))
    if codec == Codec.ZSTD_FLOAT:
        assert reference_decode(stored, len(raw)) == raw
        kept = [r for r in regions if r.count >= MIN_GROUP_ELEMENTS]
        assert_frame_of(stored, reference_content(raw, kept))
    _decode_at_every_phase(codec, stored, raw)


@pytest.mark.parametrize("kind", list(FloatKind))
@pytest.mark.parametrize("offset", [0, 1, 2, 3])
def test_large_region_at_every_offset(kind: FloatKind, offset: int) -> None:
    """A region as a 1 MiB push chunk holds it: several zstd blocks per plane."""
    count = (1 << 20) // kind.itemsize - 1
    raw = bytes(range(offset)) + element_bytes(kind, count, "specials", seed=offset) + b"\xff" * 3
    stored = reference_encode(raw, [Region(offset, count, kind)])
    _decode_at_every_phase(Codec.ZSTD_FLOAT, stored, raw)
    codec, mine = encode_v2(raw, ByteLayout((Region(offset, count, kind),)))
    assert codec == Codec.ZSTD_FLOAT
    assert reference_decode(mine, len(raw)) == raw


def test_large_region_at_every_offset_is_one_well_formed_frame() -> None:
    """Planes over 128 KiB span several blocks, raw ones included: each within the block limit."""
    kind, count = FloatKind.BF16, (1 << 20) // 2 - 1
    raw = b"\x01" + element_bytes(kind, count, "weights", seed=1) + b"\x02"
    region = Region(1, count, kind)
    codec, stored = encode_v2(raw, ByteLayout((region,)))
    assert codec == Codec.ZSTD_FLOAT
    blocks = assert_frame_of(stored, reference_content(raw, [region]))
    assert sum(size for btype, size in blocks if btype == 0) >= count  # the mantissa plane, raw


@pytest.mark.parametrize("with_fp16", [False, True])
def test_compressed_planes_followed_by_raw_ones(with_fp16: bool) -> None:
    """Shrinking exponent planes between planes of noise: raw blocks after compressed ones (the
    run of one plane compressed at once, or of three with block ends between them)."""
    bf16 = element_bytes(FloatKind.BF16, 50_000, "weights", seed=3)
    fp16 = element_bytes(FloatKind.F16, 30_000, "weights", seed=5) if with_fp16 else b""
    fp32 = element_bytes(FloatKind.F32, 40_000, "random", seed=4)
    raw = bf16 + fp16 + fp32
    regions = [Region(0, 50_000, FloatKind.BF16)]
    if with_fp16:
        regions.append(Region(len(bf16), 30_000, FloatKind.F16))
    regions.append(Region(len(bf16) + len(fp16), 40_000, FloatKind.F32))
    codec, stored = encode_v2(raw, ByteLayout(tuple(regions)))
    assert codec == Codec.ZSTD_FLOAT
    types = [btype for btype, _ in assert_frame_of(stored, reference_content(raw, regions))]
    assert 2 in types and types[-1] == 0 and types.index(2) < len(types) - 1
    assert reference_decode(stored, len(raw)) == raw
    _decode_at_every_phase(codec, stored, raw)


def test_shrinking_plain_bytes_before_planes_of_noise() -> None:
    """Only the bytes outside the regions shrink: they are compressed, the planes stay raw."""
    raw = bytes(8000) + element_bytes(FloatKind.F16, 30_000, "random", seed=5)
    regions = [Region(8000, 30_000, FloatKind.F16)]
    codec, stored = encode_v2(raw, ByteLayout(tuple(regions)))
    assert codec == Codec.ZSTD_FLOAT
    blocks = assert_frame_of(stored, reference_content(raw, regions))
    assert blocks[0][0] == 2 and {btype for btype, _ in blocks[1:]} == {0}
    _decode_at_every_phase(codec, stored, raw)


@pytest.mark.parametrize("content_size", [255, 256, 257, 65791, 65792, 65793])
def test_frame_header_at_each_content_size_width(content_size: int) -> None:
    """The frame's content size field takes 1, 2 (offset by 256) or 4 bytes by value."""
    count = 100 if content_size < 1000 else 30_000
    plain = next(  # the header (one region) holds the varints of ``plain`` and ``count``
        p for h in range(4, 12) if len(_varint(p := content_size - h - 2 * count) + _varint(count)) + 2 == h
    )
    raw = bytes(range(256)) * (plain // 256) + bytes(range(plain % 256))
    raw += element_bytes(FloatKind.BF16, count, "weights", seed=content_size)
    regions = [Region(plain, count, FloatKind.BF16)]
    codec, stored = encode_v2(raw, ByteLayout(tuple(regions)))
    assert codec == Codec.ZSTD_FLOAT
    content = reference_content(raw, regions)
    assert len(content) == content_size
    assert_frame_of(stored, content)
    _decode_at_every_phase(codec, stored, raw)


@pytest.mark.parametrize("float_codec", [Codec.ZSTD_FLOAT, Codec.FLOAT_PLANES])
@pytest.mark.parametrize("kind", list(FloatKind))
def test_regions_of_noise_are_stored_raw(kind: FloatKind, float_codec: Codec) -> None:
    raw = element_bytes(kind, 100_000, "random", seed=6)
    codec, stored = encode_chunk(raw, ByteLayout((Region(0, 100_000, kind),)), float_codec=float_codec)
    assert (codec, bytes(stored)) == (Codec.RAW, raw)


class _Recording:
    """Stands in for the codec's zstd compressors and records the sizes each is given."""

    def __init__(self, floatc: zstandard.ZstdCompressor, planes: object) -> None:
        self._floatc, self._planes = floatc, planes
        self.probes_and_runs: list[int] = []  # what zstandard's compressor is given
        self.plane_runs: list[int] = []  # what the plane coder is given

    def compress(self, data: memoryview) -> bytes:
        self.probes_and_runs.append(memoryview(data).nbytes)
        return self._floatc.compress(data)

    def compressobj(self, size: int) -> zstandard.ZstdCompressionObj:
        self.probes_and_runs.append(size)
        return self._floatc.compressobj(size=size)

    def blocks(self, run: memoryview, cuts: list[int]) -> memoryview:
        self.plane_runs.append(run.nbytes)
        return self._planes.blocks(run, cuts)  # type: ignore[attr-defined,no-any-return]


@pytest.fixture
def recording(monkeypatch: pytest.MonkeyPatch) -> _Recording:
    from weightvault.cas import compression

    rec = _Recording(compression._state.floatc, compression._state.planes)
    monkeypatch.setattr(compression._state, "floatc", rec)
    monkeypatch.setattr(compression._state, "_planes", rec)
    return rec


def test_planes_of_noise_do_not_go_through_zstd(recording: _Recording) -> None:
    """Only small probes of a mantissa plane are compressed; the exponent plane is, whole, by the
    plane coder (an accelerated match search, Huffman-coded literals)."""
    from weightvault.cas import compression

    count = 300_000
    raw = element_bytes(FloatKind.BF16, count, "weights", seed=7)
    codec, stored = encode_v2(raw, ByteLayout((Region(0, count, FloatKind.BF16),)))
    assert codec == Codec.ZSTD_FLOAT
    assert reference_decode(stored, len(raw)) == raw
    assert recording.plane_runs == [count]  # the exponent plane
    assert all(n <= compression._PROBE_BYTES for n in recording.probes_and_runs)


def test_shrinking_text_before_planes_keeps_zstds_full_search(recording: _Recording) -> None:
    """When the bytes outside the regions shrink (a safetensors header, say), the run from them
    to the exponent plane is compressed by zstd without acceleration, which text needs."""
    entry = b'"model.layers.%d.mlp.weight": {"dtype": "BF16", "shape": [1536]}, '
    text = b"".join(entry % i for i in range(150))
    count = 50_000
    raw = text + element_bytes(FloatKind.BF16, count, "weights", seed=12)
    regions = [Region(len(text), count, FloatKind.BF16)]
    codec, stored = encode_v2(raw, ByteLayout(tuple(regions)))
    assert codec == Codec.ZSTD_FLOAT
    content = reference_content(raw, regions)
    assert_frame_of(stored, content)
    assert recording.plane_runs == [] and max(recording.probes_and_runs) == len(content)
    _decode_at_every_phase(codec, stored, raw)


def test_exponent_planes_no_larger_than_with_the_full_search() -> None:
    """The accelerated search loses nothing that paid: the exponent plane of bf16 weights comes
    out no larger than zstd's unaccelerated search made it (measured: 0.1-0.2% smaller)."""
    from weightvault.cas import compression

    count = 600_000  # several blocks per plane
    raw = element_bytes(FloatKind.BF16, count, "weights", seed=11)
    region = Region(0, count, FloatKind.BF16)
    codec, stored = encode_v2(raw, ByteLayout((region,)))
    assert codec == Codec.ZSTD_FLOAT
    content = reference_content(raw, [region])
    blocks = assert_frame_of(stored, content)
    coded = sum(size + 3 for btype, size in blocks if btype == 2)
    assert coded >= count // (128 << 10)  # the exponent plane, block by block
    full = compression._state.floatc.compress(content[-count:])
    assert coded <= len(full) - zstandard.frame_header_size(full)


@pytest.mark.parametrize("kind", list(FloatKind))
def test_plane_runs_across_kinds_and_block_sizes(kind: FloatKind, recording: _Recording) -> None:
    """A run of several shrinking planes of two kinds, plane sizes not a multiple of a block,
    coded as one run with a block end at each plane cut: one well-formed frame that decodes."""
    count_a, count_b = 70_001, 131_075
    raw = element_bytes(FloatKind.BF16, count_a, "weights", seed=13)
    raw += element_bytes(kind, count_b, "weights", seed=14)
    regions = [
        Region(0, count_a, FloatKind.BF16),
        Region(2 * count_a, count_b, kind),
    ]  # BF16: one set of planes
    codec, stored = encode_v2(raw, ByteLayout(tuple(regions)))
    assert codec == Codec.ZSTD_FLOAT
    assert_frame_of(stored, reference_content(raw, regions))
    assert len(recording.plane_runs) == 1 and recording.plane_runs[0] >= count_a + count_b
    assert reference_decode(stored, len(raw)) == raw
    _decode_at_every_phase(codec, stored, raw)


# ---------------------------------------------------------------- codec 3 (FLOAT_PLANES)


def reference_sections(raw: bytes, regions: list[Region]) -> tuple[bytes, list[bytes]]:
    """Codec 3's ``header`` and its sections' raw bytes, as docs/format.md defines them."""
    content = reference_content(raw, regions)
    plain_len = len(raw) - sum(r.nbytes for r in regions)
    body = content[len(content) - len(raw) :]
    header = content[: len(content) - len(raw)]
    sections = [body[:plain_len]]
    p = plain_len
    for kind in KIND_ORDER:
        count = sum(r.count for r in regions if r.kind is kind)
        if count:
            for _ in range(kind.itemsize):
                sections.append(body[p : p + count])
                p += count
    return header, sections


def reference_encode3(raw: bytes, regions: list[Region], compress: list[bool]) -> bytes:
    """A codec-3 blob, the sections flagged in ``compress`` as zstd frames where they shrink."""
    header, sections = reference_sections(raw, regions)
    stored = []
    for sec, z in zip(sections, compress + [False] * len(sections), strict=False):
        frame = zstandard.ZstdCompressor(level=3).compress(sec) if z and sec else b""
        stored.append(frame if frame and len(frame) < len(sec) else sec)
    return header + b"".join(struct.pack("<I", len(x)) for x in stored) + b"".join(stored)


def reference_decode3(stored: bytes, raw_len: int) -> tuple[bytes, list[int]]:
    """Inverse of :func:`reference_encode3` for trusted input; also the stored section lengths."""
    regions, pos = _reference_regions(stored)
    _, raw_sections = reference_sections(bytes(raw_len), regions)
    lengths = list(struct.unpack_from(f"<{len(raw_sections)}I", stored, pos))
    pos += 4 * len(raw_sections)
    assert pos + sum(lengths) == len(stored)
    body = b""
    for want, n_stored in zip(raw_sections, lengths, strict=True):
        sec = stored[pos : pos + n_stored]
        pos += n_stored
        if n_stored < len(want):
            sec = zstandard.ZstdDecompressor().decompress(sec, max_output_size=len(want))
        assert len(sec) == len(want)
        body += sec
    header = stored[: len(stored) - sum(lengths) - 4 * len(lengths)]
    return reference_decode(
        zstandard.ZstdCompressor(write_checksum=True).compress(header + body), raw_len
    ), lengths


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw_and_regions(), st.lists(st.booleans(), max_size=20))
def test_reference3_blobs_decode_to_the_same_bytes(
    case: tuple[bytes, list[Region]], compress: list[bool]
) -> None:
    raw, regions = case
    stored = reference_encode3(raw, regions, compress)
    assert reference_decode3(stored, len(raw))[0] == raw
    _decode_at_every_phase(Codec.FLOAT_PLANES, stored, raw)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw_and_regions())
def test_codec3_blobs_decode_with_the_reference(case: tuple[bytes, list[Region]]) -> None:
    raw, regions = case
    codec, stored = encode_chunk(raw, ByteLayout(tuple(regions)))
    assert codec in (Codec.RAW, Codec.ZSTD, Codec.FLOAT_PLANES)
    if codec == Codec.FLOAT_PLANES:
        assert reference_decode3(stored, len(raw))[0] == raw
        kept = [r for r in regions if r.count >= MIN_GROUP_ELEMENTS]
        header, _ = reference_sections(raw, kept)
        assert stored.startswith(header)
    _decode_at_every_phase(codec, stored, raw)


@pytest.mark.parametrize("kind", list(FloatKind))
@pytest.mark.parametrize("offset", [0, 1, 2, 3])
def test_codec3_large_region_at_every_offset(kind: FloatKind, offset: int) -> None:
    count = 150_001
    raw = bytes(range(offset)) + element_bytes(kind, count, "specials", seed=offset) + b"tail"
    codec, stored = encode_chunk(raw, ByteLayout((Region(offset, count, kind),)))
    assert codec == Codec.FLOAT_PLANES
    assert reference_decode3(stored, len(raw))[0] == raw
    _decode_at_every_phase(codec, stored, raw)


def test_codec3_mantissa_plane_of_bf16_weights_is_stored_as_it_is() -> None:
    """The low byte of bf16 weights is noise: its section is the plane itself, verbatim (no zstd
    frame to pass through on either side); the sign-and-exponent plane is one zstd frame."""
    count = 300_000
    raw = element_bytes(FloatKind.BF16, count, "weights", seed=7)
    codec, stored = encode_chunk(raw, ByteLayout((Region(0, count, FloatKind.BF16),)))
    assert codec == Codec.FLOAT_PLANES
    got, lengths = reference_decode3(stored, len(raw))
    assert got == raw
    plain, lo, hi = lengths
    assert (plain, lo) == (0, count) and hi < count * 0.45
    at = len(stored) - lo - hi
    assert stored[at : at + lo] == raw[0::2]
    frame = stored[at + lo :]
    params = zstandard.get_frame_parameters(frame)
    assert params.content_size == count and not params.has_checksum  # the chunk id checks it


def test_codec3_low_bytes_that_shrink_are_compressed() -> None:
    """bf16 weights cast up from a narrow type (3 mantissa bits, as fp8 e4m3) have low bytes that
    shrink: the probe finds that, and the low plane is a zstd frame too."""
    count = 200_000
    x = element_bytes(FloatKind.BF16, count, "weights", seed=9)
    raw = (np.frombuffer(x, dtype="<u2") & np.uint16(0xFFF0)).astype("<u2").tobytes()
    codec, stored = encode_chunk(raw, ByteLayout((Region(0, count, FloatKind.BF16),)))
    assert codec == Codec.FLOAT_PLANES
    got, (_, lo, _) = reference_decode3(stored, len(raw))
    assert got == raw and lo < count * 0.6


def test_codec3_ratio_matches_codec2() -> None:
    """Dropping the frame around the planes costs no size: within 0.1% of codec 2."""
    raw = b"".join(element_bytes(k, 120_000, "weights", seed=3) for k in KIND_ORDER)
    regions, pos = [], 0
    for k in KIND_ORDER:
        regions.append(Region(pos, 120_000, k))
        pos += 120_000 * k.itemsize
    layout = ByteLayout(tuple(regions))
    c2, s2 = encode_v2(raw, layout)
    c3, s3 = encode_chunk(raw, layout)
    assert (c2, c3) == (Codec.ZSTD_FLOAT, Codec.FLOAT_PLANES)
    assert len(s3) <= len(s2) * 1.001
