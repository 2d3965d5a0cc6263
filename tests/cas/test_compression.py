from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import zstandard
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from weightvault.cas.compression import (
    ENCRYPTED,
    MIN_GROUP_ELEMENTS,
    ByteLayout,
    Codec,
    FileLayout,
    FloatKind,
    Region,
    TensorSpan,
    compression_codec,
    decode_chunk,
    decode_chunk_into,
    encode_chunk,
    layout_for_range,
)
from weightvault.core.errors import CorruptObjectError, InvalidInputError

KINDS = list(FloatKind)


def weights(n: int, kind: FloatKind, seed: int = 0) -> bytes:
    """Weight-like values (normal, std 0.02) as little-endian bytes of ``kind``."""
    x = (np.random.default_rng(seed).standard_normal(n) * 0.02).astype("<f4")
    if kind is FloatKind.F32:
        return x.tobytes()
    if kind is FloatKind.F16:
        return x.astype("<f2").tobytes()
    u = x.view("<u4")
    return bytes(((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype("<u2").tobytes())


def zstd_plain_ratio(raw: bytes) -> float:
    return len(raw) / float(len(zstandard.ZstdCompressor(level=3).compress(raw)))


@st.composite
def chunk_and_layout(draw: st.DrawFn) -> tuple[bytes, ByteLayout]:
    """A chunk with float regions at arbitrary (unaligned) offsets, plain bytes between."""
    parts: list[bytes] = [draw(st.binary(max_size=7))]
    regions: list[Region] = []
    pos = len(parts[0])
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(KINDS))
        count = draw(st.integers(1, 3000))
        if draw(st.booleans()):
            data = weights(count, kind, seed=draw(st.integers(0, 5)))
        else:
            data = draw(st.binary(min_size=count * kind.itemsize, max_size=count * kind.itemsize))
        regions.append(Region(pos, count, kind))
        gap = draw(st.binary(max_size=9))
        parts += [data, gap]
        pos += len(data) + len(gap)
    return b"".join(parts), ByteLayout(tuple(regions))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunk_and_layout(), st.sampled_from([1, 3]), st.sampled_from([Codec.ZSTD_FLOAT, Codec.FLOAT_PLANES]))
def test_round_trip_with_layouts(case: tuple[bytes, ByteLayout], level: int, float_codec: Codec) -> None:
    raw, layout = case
    codec, stored = encode_chunk(raw, layout, level, float_codec=float_codec)
    assert codec in (Codec.RAW, Codec.ZSTD, float_codec)
    assert len(stored) <= len(raw)
    assert decode_chunk(codec, stored, len(raw)) == raw
    out = bytearray(len(raw))
    decode_chunk_into(codec, stored, out)
    assert out == raw


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=20000))
def test_round_trip_plain_bytes(raw: bytes) -> None:
    codec, stored = encode_chunk(raw, None)
    assert decode_chunk(codec, memoryview(stored), len(raw)) == raw


@pytest.mark.parametrize("kind", KINDS)
def test_float_regions_compress_better_than_plain_zstd(kind: FloatKind) -> None:
    raw = b"\x01\x02\x03" + weights(200_000, kind)  # starts mid-element, as CDC cuts
    codec, stored = encode_chunk(raw, ByteLayout((Region(3, 200_000, kind),)))
    assert codec == Codec.FLOAT_PLANES
    ratio = len(raw) / len(stored)
    # Entropy of these values bounds the gain: bf16 ~1.5x, fp16 and fp32 ~1.18x.
    expected = {FloatKind.BF16: 1.45, FloatKind.F16: 1.15, FloatKind.F32: 1.16}[kind]
    assert ratio >= expected
    assert ratio > zstd_plain_ratio(raw) * 1.04
    assert decode_chunk(codec, stored, len(raw)) == raw


def test_small_chunk_keeps_float_ratio() -> None:
    """Byte planes are compressed apart (their own zstd blocks or frames), so small chunks keep
    the gain."""
    raw = weights(50_000, FloatKind.BF16)
    for float_codec in (Codec.ZSTD_FLOAT, Codec.FLOAT_PLANES):
        codec, stored = encode_chunk(
            raw, ByteLayout((Region(0, 50_000, FloatKind.BF16),)), float_codec=float_codec
        )
        assert codec == float_codec
        assert len(raw) / len(stored) > 1.45


def test_chunk_spanning_several_dtypes_with_unaligned_start() -> None:
    bf = weights(30_000, FloatKind.BF16, seed=1)
    f32 = weights(30_000, FloatKind.F32, seed=2)
    f16 = weights(30_000, FloatKind.F16, seed=3)
    ints = np.arange(5000, dtype="<i8").tobytes()
    # The chunk starts one byte into a bf16 tensor and ends three bytes into an fp16 one.
    raw = bf[1:] + f32 + ints + f16[:3]
    layout = ByteLayout(
        (
            Region(1, 29_999, FloatKind.BF16),
            Region(len(bf) - 1, 30_000, FloatKind.F32),
            Region(len(bf) - 1 + len(f32) + len(ints), 1, FloatKind.F16),
        )
    )
    codec, stored = encode_chunk(raw, layout)
    assert codec == Codec.FLOAT_PLANES
    assert decode_chunk(codec, stored, len(raw)) == raw
    _, plain = encode_chunk(raw, None)
    assert len(stored) < len(plain)


def test_incompressible_is_stored_raw() -> None:
    raw = os.urandom(100_000)
    for layout in (None, ByteLayout((Region(0, 50_000, FloatKind.BF16),))):
        codec, stored = encode_chunk(raw, layout)
        assert codec == Codec.RAW and stored == raw
        assert decode_chunk(codec, stored, len(raw)) == raw


def test_empty_chunk() -> None:
    assert encode_chunk(b"", None) == (Codec.RAW, b"")
    assert decode_chunk(Codec.RAW, b"", 0) == b""


def test_layout_past_chunk_is_refused() -> None:
    with pytest.raises(InvalidInputError):
        encode_chunk(b"\0" * 100, ByteLayout((Region(90, 10, FloatKind.F16),)))
    with pytest.raises(InvalidInputError):
        ByteLayout((Region(0, 10, FloatKind.F16), Region(10, 1, FloatKind.F16)))
    with pytest.raises(InvalidInputError):
        ByteLayout((Region(0, 0, FloatKind.F16),))


def _sample_blobs() -> list[tuple[int, bytes, bytes]]:
    text = b"".join(b"line %d of a config file\n" % i for i in range(3000))
    raw_f = b"\x07" + weights(20_000, FloatKind.BF16) + weights(5000, FloatKind.F32)
    layout = ByteLayout((Region(1, 20_000, FloatKind.BF16), Region(40_001, 5000, FloatKind.F32)))
    out = []
    for raw, lay, float_codec in (
        (text, None, Codec.FLOAT_PLANES),
        (raw_f, layout, Codec.ZSTD_FLOAT),
        (raw_f, layout, Codec.FLOAT_PLANES),
    ):
        codec, stored = encode_chunk(raw, lay, float_codec=float_codec)
        assert codec == (float_codec if lay else Codec.ZSTD)
        out.append((codec, stored, raw))
    return out


BLOBS = _sample_blobs()
#: The blobs with a checksum of their content (codec 3 has none: the chunk id checks it).
CHECKSUMMED = [i for i, (codec, _, _) in enumerate(BLOBS) if codec != Codec.FLOAT_PLANES]


def _flip(blob: bytes, bit: int) -> bytes:
    bad = bytearray(blob)
    bad[bit // 8] ^= 1 << (bit % 8)
    return bytes(bad)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(CHECKSUMMED), st.data())
def test_flipped_bit_never_decodes_to_wrong_bytes(which: int, data: st.DataObject) -> None:
    codec, stored, raw = BLOBS[which]
    bit = data.draw(st.integers(0, len(stored) * 8 - 1))
    try:
        got = decode_chunk(codec, _flip(stored, bit), len(raw))
    except CorruptObjectError:
        return
    # A few bits change nothing (the window size, an unused entropy-table entry).
    assert got == raw


@pytest.mark.parametrize("which", CHECKSUMMED)
def test_flipped_bits_are_detected(which: int) -> None:
    codec, stored, raw = BLOBS[which]
    bits = range(0, len(stored) * 8, 7)
    detected = 0
    for bit in bits:
        try:
            assert decode_chunk(codec, _flip(stored, bit), len(raw)) == raw
        except CorruptObjectError:
            detected += 1
    assert detected >= 0.95 * len(bits)


@pytest.mark.parametrize("which", range(len(BLOBS)))
def test_malformed_blobs_raise_corrupt(which: int) -> None:
    codec, stored, raw = BLOBS[which]
    n = len(raw)
    cases = [
        (stored + b"\0", n),  # trailing bytes
        (stored[:-1], n),  # truncated
        (stored[: len(stored) // 2], n),
        (stored, n + 1),  # wrong raw length
        (stored, n - 1),
        (b"", n),
        (b"\x28\xb5\x2f\xfd", n),  # bare magic
    ]
    for bad, raw_len in cases:
        with pytest.raises(CorruptObjectError):
            decode_chunk(codec, bad, raw_len)
    with pytest.raises(CorruptObjectError):
        decode_chunk(Codec.RAW, stored, len(stored) + 1)
    with pytest.raises(CorruptObjectError):
        decode_chunk(9, stored, n)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_flipped_bit_in_codec3_never_crashes_nor_changes_the_length(data: st.DataObject) -> None:
    """Without a checksum a flipped bit in a raw section decodes to other bytes, of the right
    length (the chunk id check that follows every decode rejects them); anything else is corrupt."""
    codec, stored, raw = BLOBS[-1]
    bit = data.draw(st.integers(0, len(stored) * 8 - 1))
    try:
        got = decode_chunk(codec, _flip(stored, bit), len(raw))
    except CorruptObjectError:
        return
    assert len(got) == len(raw)


def test_flipped_bits_in_codec3_lengths_are_detected() -> None:
    codec, stored, raw = BLOBS[-1]
    assert codec == Codec.FLOAT_PLANES
    header = 1 + (1 + 3 + 1) + (1 + 2 + 1)  # 2 regions: gap, count (20,000 then 5,000), kind
    n_sections = 1 + 2 + 4
    for bit in range(8 * header, 8 * (header + 4 * n_sections)):
        with pytest.raises(CorruptObjectError):
            decode_chunk(codec, _flip(stored, bit), len(raw))


def _blob3(header: bytes, sections: list[bytes]) -> bytes:
    return header + b"".join(len(s).to_bytes(4, "little") for s in sections) + b"".join(sections)


def test_malformed_codec3_blobs_raise_corrupt() -> None:
    """Each way a codec-3 blob can be wrong is refused as corrupt, never crashes or returns
    bytes of another length."""
    lo, hi = bytes(range(64)), bytes(64)  # 64 bf16 elements, the chunk holds 128 bytes
    header = b"\x01\x00\x40\x01"  # one region: gap 0, 64 elements, bf16
    z = zstandard.ZstdCompressor(write_checksum=False).compress
    good = _blob3(header, [b"", lo, z(hi)])
    assert decode_chunk(Codec.FLOAT_PLANES, good, 128)[1::2] == hi
    bad = [
        b"\x01\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01\x01",  # oversized varint
        b"\x81",  # truncated varint
        b"\x00" + good[1:],  # no regions
        b"\x01\x00\x40\x07" + good[4:],  # unknown kind
        b"\x01\x00\x41\x01" + good[4:],  # the region runs past the chunk
        good[:6],  # truncated in the lengths
        good + b"\0",  # trailing bytes
        good[:-1],  # truncated in a section
        _blob3(header, [b"", lo, hi + b"x"]),  # a section longer than its plane
        _blob3(header, [b"", lo, z(hi)])[:-3] + (99).to_bytes(4, "little")[:3],  # lengths past the end
        header + (0).to_bytes(4, "little") + (64).to_bytes(4, "little") + (1000).to_bytes(4, "little") + lo,
        _blob3(header, [b"", lo, z(hi[:63])]),  # a frame one byte short
        _blob3(header, [b"", lo, z(hi + b"\0")]),  # a frame one byte long
        _blob3(header, [b"", lo, z(hi[:32]) + z(hi[32:])]),  # two frames in a section
        _blob3(header, [b"", lo, b"\x28\xb5\x2f\xfd" + bytes(20)]),  # not a frame
        _blob3(header, [b"x", lo, z(hi)]),  # plain bytes where the regions cover the chunk
        _blob3(header, [b"", lo]),  # a missing plane
    ]
    for blob in bad:
        with pytest.raises(CorruptObjectError):
            decode_chunk(Codec.FLOAT_PLANES, blob, 128)
        with pytest.raises(CorruptObjectError):
            decode_chunk_into(Codec.FLOAT_PLANES, blob, bytearray(128))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=40), st.lists(st.binary(max_size=80), max_size=8), st.integers(0, 400))
def test_garbage_codec3_blobs_never_crash(header: bytes, sections: list[bytes], raw_len: int) -> None:
    """Hostile codec-3 blobs with consistent section lengths: CorruptObjectError or ``raw_len`` bytes."""
    try:
        out = decode_chunk(Codec.FLOAT_PLANES, _blob3(header, sections), raw_len)
    except CorruptObjectError:
        return
    assert len(out) == raw_len


def test_frame_without_checksum_or_with_lying_size_is_refused() -> None:
    raw = b"abc" * 1000
    no_sum = zstandard.ZstdCompressor(write_checksum=False).compress(raw)
    with pytest.raises(CorruptObjectError):
        decode_chunk(Codec.ZSTD, no_sum, len(raw))
    # A frame declaring 1 TiB must be refused before anything is allocated.
    with pytest.raises(CorruptObjectError):
        decode_chunk(Codec.ZSTD, no_sum, 1 << 40)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64), st.binary(max_size=200))
def test_garbage_float_header_never_crashes(header: bytes, body: bytes) -> None:
    """Hostile content with a valid checksum: errors are CorruptObjectError, nothing else."""
    stored = zstandard.ZstdCompressor(write_checksum=True).compress(header + body)
    try:
        out = decode_chunk(Codec.ZSTD_FLOAT, stored, len(body))
    except CorruptObjectError:
        return
    assert len(out) == len(body)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300), st.integers(0, 5000), st.sampled_from(list(Codec)))
def test_random_blobs_never_crash(blob: bytes, raw_len: int, codec: Codec) -> None:
    assume(not (codec == Codec.RAW and len(blob) == raw_len))
    with pytest.raises(CorruptObjectError):
        decode_chunk(codec, blob, raw_len)


def test_codec_byte_parsing() -> None:
    assert compression_codec(Codec.ZSTD_FLOAT | ENCRYPTED) is Codec.ZSTD_FLOAT
    assert compression_codec(0x83) is Codec.FLOAT_PLANES
    assert compression_codec(0) is Codec.RAW
    for bad in (0x04, 0x10, 0x40, 0x84, 0x8F):
        with pytest.raises(CorruptObjectError):
            compression_codec(bad)


def test_threads_share_nothing() -> None:
    """Contexts and scratch buffers are per thread: concurrent use gives exact results."""
    inputs = [
        (weights(70_000 + 1000 * i, KINDS[i % 3], seed=i), KINDS[i % 3], 70_000 + 1000 * i) for i in range(24)
    ]
    errors: list[BaseException] = []
    seen: set[int] = set()

    def work(item: tuple[bytes, FloatKind, int]) -> None:
        raw, kind, n = item
        seen.add(threading.get_ident())
        try:
            for _ in range(3):
                codec, stored = encode_chunk(raw, ByteLayout((Region(0, n, kind),)))
                assert decode_chunk(codec, stored, len(raw)) == raw
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(work, inputs))
    assert not errors
    assert len(seen) > 1


# ---------------------------------------------------------------- layout_for_range


@st.composite
def file_layouts(draw: st.DrawFn) -> FileLayout:
    spans = []
    pos = draw(st.integers(0, 50))
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(KINDS))
        n = draw(st.integers(0, 40))
        spans.append(TensorSpan(pos, pos + n * kind.itemsize, kind))
        pos += n * kind.itemsize + draw(st.integers(0, 9))
    return FileLayout(tuple(spans))


@settings(max_examples=300)
@given(file_layouts(), st.integers(0, 400), st.integers(0, 400))
def test_layout_for_range_matches_brute_force(fl: FileLayout, offset: int, length: int) -> None:
    layout = layout_for_range(fl, offset, length)
    expected = []
    for s in fl.spans:
        k = s.kind.itemsize
        whole = [e for e in range(s.start, s.end, k) if e >= offset and e + k <= offset + length]
        if whole:
            expected.append(Region(whole[0] - offset, len(whole), s.kind))
    assert list(layout.regions) == expected


def test_layout_for_range_without_layout() -> None:
    assert layout_for_range(None, 0, 100).regions == ()
    assert MIN_GROUP_ELEMENTS > 1
