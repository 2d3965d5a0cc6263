"""Lossless, float-aware compression of chunks.

Trained weights are close to incompressible as bytes, but not as numbers: the exponent of
a float weight takes a handful of values while the low mantissa bits are noise. So for the
byte ranges a :class:`ByteLayout` marks as bf16/fp16/fp32 we split the elements into byte
planes (byte 0 of every element, then byte 1, ...) and let zstd entropy-code each plane in
its own blocks: the plane holding sign and exponent shrinks 2-3x. Mantissa planes are noise;
a probe of a few KB finds that out and they are written as raw zstd blocks without passing
through zstd at all (the frame is assembled here, :func:`_float_frame`). The planes that do
shrink are compressed with zstd's match search accelerated and its Huffman coding of literals
kept (:class:`_PlaneCoder`): Huffman coding is what shrinks them; matches rarely pay there.
Everything else is plain zstd, and a chunk that does not shrink is stored as it is. (Rotating the sign bit out
of the exponent byte, as zipnn does, gained 0.1-1% in ratio but cost 15-35% of the
throughput in numpy, so it is not done.)

Codec values (the 1-byte ``codec`` of a blob in a pack table; see :class:`Codec`):

====  ===========  ==========================================================================
0     RAW          the stored bytes are the raw chunk
1     ZSTD         one zstd frame (content size and XXH64 checksum set) of the raw chunk
2     ZSTD_FLOAT   one zstd frame (same flags) whose content is ``header | transformed``;
                   read, no longer written
3     FLOAT_PLANES ``header | lengths | sections``: the planes of 2 without a frame around them
0x80  ENCRYPTED    flag OR-ed onto 0-3 by :mod:`weightvault.cas.encryption`
====  ===========  ==========================================================================

ZSTD_FLOAT content: ``header`` is ``varint n`` then ``n`` times ``varint gap, varint count,
u8 kind`` (``gap`` = bytes from the end of the previous region, or from the chunk start, to
this region; ``count`` = whole elements; ``kind`` = :class:`FloatKind`), varints being
unsigned LEB128. ``transformed`` (exactly ``raw_len`` bytes) is: every byte outside the
regions, in order; then for each kind present, in the order BF16, F16, F32: the elements of
all its regions (concatenated in order, little-endian) split into byte planes, the plane of
byte 0 (least significant) first. Every plane starts a new zstd block. The header sits
inside the frame so the frame checksum covers it too.

FLOAT_PLANES (what ``compression: float`` writes): the same ``header``, then one ``u32`` LE
stored length per section, then the sections: the bytes outside the regions, then each byte
plane as above. A section stored in as many bytes as it holds is those bytes; a shorter one
is one zstd frame of them. No checksum: the XXH64 of codec 2 cost ~0.1 CPU-s per GiB each
way and proved nothing the chunk id (plain blobs) or the AES-GCM tag (sealed ones) does not,
and mantissa planes that are stored raw are read in place, never copied into a frame.
"""

from __future__ import annotations

import bisect
import itertools
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Final

import numpy as np
import numpy.typing as npt
import xxhash
import zstandard

from weightvault.core.errors import CorruptObjectError, InvalidInputError

BytesLike = bytes | bytearray | memoryview


class Codec(IntEnum):
    """How a blob's bytes encode its chunk (the low bits of the pack-table codec byte)."""

    RAW = 0
    ZSTD = 1
    ZSTD_FLOAT = 2
    FLOAT_PLANES = 3


#: Bit set on the codec byte when the stored bytes are sealed by ``cas.encryption``.
ENCRYPTED: Final = 0x80
_COMPRESSION_MASK: Final = 0x0F

#: Plain zstd level, by measurement (bench/RESULTS_compression.md): on weights without a
#: layout (pickles, GGUF, ONNX) level 1 is as small as level 3 and twice as fast; on text
#: (tokenizers, configs) level 3 is ~15% smaller but runs at ~100 MB/s, and such files are
#: a rounding error next to the weights. Pass a higher level for archival stores.
DEFAULT_LEVEL: Final = 1

#: Parameters for the byte planes of float regions, chosen by measurement (bench/): a
#: tiny hash table and 7-byte minimum matches stop zstd from trading entropy-coded
#: exponent literals for short, costly matches, which makes it both faster (about 2x on
#: the exponent plane) and smaller (within 1% of the order-0 entropy) than any level.
_FLOAT_PARAMS: Final = {
    "window_log": 17,
    "hash_log": 6,
    "chain_log": 6,
    "search_log": 1,
    "min_match": 7,
    "target_length": 0,
    "strategy": 1,  # ZSTD_fast
}

#: zstd's frame magic and its largest block (RFC 8878: Block_Maximum_Size).
_ZSTD_MAGIC: Final = b"\x28\xb5\x2f\xfd"
_BLOCK_MAX: Final = 128 << 10
#: The window of assembled float frames: the compressed run's (its matches reach no further),
#: and at least a block (raw blocks are up to 128 KiB).
_WINDOW_LOG: Final = max(_FLOAT_PARAMS["window_log"], 17)
#: A segment of float content (the plain bytes, a byte plane) shorter than this is stored raw.
_MIN_COMPRESSED: Final = 64
#: Bytes per probe of a segment, and the share of them zstd must save for the segment to be
#: compressed (zstd itself keeps a block raw unless it saves about 1/64 of it).
_PROBE_BYTES: Final = 4096
_PROBE_KEEP: Final = 0.98

#: Regions shorter than this are compressed plainly: the header costs more than it saves.
MIN_GROUP_ELEMENTS: Final = 32

#: Bound on the ZSTD_FLOAT header per chunk byte (one region per 2-byte element at most,
#: 3 varints of <= 10 bytes each), so a corrupt frame cannot make us allocate a lot.
_MAX_HEADER_PER_BYTE: Final = 11


class FloatKind(IntEnum):
    """Element types whose bytes are grouped; the value is the code in the blob header."""

    BF16 = 1
    F16 = 2
    F32 = 3

    @property
    def itemsize(self) -> int:
        return 4 if self is FloatKind.F32 else 2


_KIND_ORDER: Final = (FloatKind.BF16, FloatKind.F16, FloatKind.F32)


@dataclass(frozen=True, slots=True)
class Region:
    """``count`` whole elements of ``kind`` starting at byte ``start`` of the chunk."""

    start: int
    count: int
    kind: FloatKind

    @property
    def nbytes(self) -> int:
        return self.count * self.kind.itemsize

    @property
    def end(self) -> int:
        return self.start + self.nbytes


@dataclass(frozen=True, slots=True)
class ByteLayout:
    """Where a chunk holds float elements: sorted, non-overlapping, element-aligned regions.

    Bytes outside the regions (a partial element at either end, other dtypes, headers)
    are compressed plainly.
    """

    regions: tuple[Region, ...] = ()

    def __post_init__(self) -> None:
        prev_end = 0
        for r in self.regions:
            if not isinstance(r.kind, FloatKind) or r.count <= 0 or r.start < prev_end:
                raise InvalidInputError(f"invalid byte layout region {r!r}")
            prev_end = r.end


@dataclass(frozen=True, slots=True)
class TensorSpan:
    """A float tensor's bytes ``[start, end)`` in absolute file offsets."""

    start: int
    end: int
    kind: FloatKind


@dataclass(frozen=True, slots=True)
class FileLayout:
    """The float tensors of a whole file, sorted and non-overlapping (built by format parsers)."""

    spans: tuple[TensorSpan, ...]
    _ends: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        prev = 0
        for s in self.spans:
            if s.start < prev or s.end < s.start or (s.end - s.start) % s.kind.itemsize:
                raise InvalidInputError(f"invalid tensor span {s!r}")
            prev = s.end
        object.__setattr__(self, "_ends", tuple(s.end for s in self.spans))


def layout_for_range(file_layout: FileLayout | None, offset: int, length: int) -> ByteLayout:
    """The layout of the chunk ``[offset, offset + length)`` of a file.

    A chunk may start or end inside an element (CDC cuts anywhere): each region starts at
    the first element boundary of its tensor at or after the chunk start, and the partial
    elements at the edges stay plain.
    """
    if file_layout is None or length <= 0:
        return ByteLayout()
    stop = offset + length
    regions: list[Region] = []
    i = bisect.bisect_right(file_layout._ends, offset)
    spans = file_layout.spans
    while i < len(spans) and spans[i].start < stop:
        s = spans[i]
        k = s.kind.itemsize
        lo = max(offset, s.start)
        first = s.start + -(-(lo - s.start) // k) * k
        last = s.start + (min(stop, s.end) - s.start) // k * k
        count = (last - first) // k
        if count > 0:
            regions.append(Region(first - offset, count, s.kind))
        i += 1
    return ByteLayout(tuple(regions))


# ---------------------------------------------------------------- plane runs


#: zstd's ``targetLength`` for the fast strategy: an acceleration, the match search skipping
#: ahead faster where it finds nothing. By measurement (bench/RESULTS.md, 2026-11-30 08:10):
#: on exponent planes zstd's search finds few matches worth their cost; at 64 the run codes
#: ~15% faster and 0.1-0.2% smaller than at 1, and the matches that do pay (repeats in real
#: fp32 checkpoints) are still found: coding literals only lost 1.7% there.
_PLANE_ACCELERATION: Final = 64


class _PlaneCoder:
    """zstd for a run of byte planes: the match search accelerated, literals Huffman-coded.

    With an acceleration zstd's public parameters turn literal compression off (it assumes
    speed matters more than size); libzstd's experimental ``literalCompressionMode`` turns it
    back on, and only the ``zstandard`` package's CFFI binding reaches it (its C binding does
    not), so the run is compressed through that binding's libzstd. A block ends at each cut,
    as :func:`_compressed_run` makes them. Not thread-safe: one per thread.
    """

    def __init__(self, *, content_size: bool = False) -> None:
        from zstandard.backend_cffi import ffi, lib  # type: ignore[attr-defined]

        self._ffi = ffi
        self._lib = lib
        self._cctx = ffi.gc(lib.ZSTD_createCCtx(), lib.ZSTD_freeCCtx)
        for param, value in (
            (lib.ZSTD_c_windowLog, _FLOAT_PARAMS["window_log"]),
            (lib.ZSTD_c_hashLog, _FLOAT_PARAMS["hash_log"]),
            (lib.ZSTD_c_chainLog, _FLOAT_PARAMS["chain_log"]),
            (lib.ZSTD_c_searchLog, _FLOAT_PARAMS["search_log"]),
            (lib.ZSTD_c_minMatch, _FLOAT_PARAMS["min_match"]),
            (lib.ZSTD_c_strategy, lib.ZSTD_fast),
            (lib.ZSTD_c_targetLength, _PLANE_ACCELERATION),
            (lib.ZSTD_c_literalCompressionMode, lib.ZSTD_ps_enable),
            (lib.ZSTD_c_checksumFlag, 0),  # codec 2: the enclosing frame has one; 3: the chunk id
            (lib.ZSTD_c_contentSizeFlag, int(content_size)),
            # the run is read in place: its end moves from cut to cut, its start never
            (lib.ZSTD_c_stableInBuffer, 1),
        ):
            self._check(lib.ZSTD_CCtx_setParameter(self._cctx, param, value))
        self._in = ffi.new("ZSTD_inBuffer *")
        self._outb = ffi.new("ZSTD_outBuffer *")
        self._out = bytearray(0)
        self._out_c = ffi.from_buffer(self._out)

    def _check(self, code: int) -> int:
        if self._lib.ZSTD_isError(code):
            name = self._ffi.string(self._lib.ZSTD_getErrorName(code)).decode()
            raise zstandard.ZstdError(f"zstd (byte planes): {name}")
        return int(code)

    def _step(self, end: int, directive: int) -> None:
        self._in.size = end
        left = self._check(self._lib.ZSTD_compressStream2(self._cctx, self._outb, self._in, directive))
        if left or self._in.pos != end:  # the output holds a bound of the whole run
            raise zstandard.ZstdError("zstd (byte planes): output buffer too small")

    def blocks(self, run: memoryview, cuts: Sequence[int]) -> memoryview:
        """The blocks (no frame header) of one zstd frame of ``run``, one ending at each cut;
        valid until the next call."""
        lib = self._lib
        n = run.nbytes
        bound = lib.ZSTD_compressBound(n) + 3 * len(cuts) + 64
        if len(self._out) < bound:
            self._out = bytearray(max(bound, 1 << 20))
            self._out_c = self._ffi.from_buffer(self._out)
        self._check(lib.ZSTD_CCtx_reset(self._cctx, lib.ZSTD_reset_session_only))
        self._check(lib.ZSTD_CCtx_setPledgedSrcSize(self._cctx, n))
        src = self._ffi.from_buffer(run)
        self._in.src, self._in.pos = src, 0
        self._outb.dst, self._outb.size, self._outb.pos = self._out_c, len(self._out), 0
        for cut in cuts:
            self._step(cut, lib.ZSTD_e_flush)
        self._step(n, lib.ZSTD_e_end)
        frame = memoryview(self._out)[: self._outb.pos]
        return frame[zstandard.frame_header_size(frame) :]

    def frame_into(self, src: _U8, dst: _U8) -> int:
        """Compress ``src`` as one frame into ``dst``; returns its length, or 0 if it does not fit
        (then it would not have shrunk: ``dst`` is given the length of ``src``)."""
        ffi, lib = self._ffi, self._lib
        code = lib.ZSTD_compress2(
            self._cctx,
            ffi.cast("void *", dst.ctypes.data),
            dst.size,
            ffi.cast("const void *", src.ctypes.data),
            src.size,
        )
        if lib.ZSTD_isError(code):
            if lib.ZSTD_getErrorCode(code) == lib.ZSTD_error_dstSize_tooSmall:
                return 0
            self._check(code)
        return int(code)


class _FrameDecoder:
    """Decodes one zstd frame straight into a buffer of its known length (codec 3 sections).

    libzstd's one-shot decompression through the CFFI binding: no output allocation, no
    streaming window, and it reports the decoded size, so a frame that decodes to more or
    fewer bytes than its section holds is caught. Not thread-safe: one per thread.
    """

    def __init__(self) -> None:
        from zstandard.backend_cffi import ffi, lib  # type: ignore[attr-defined]

        self._ffi = ffi
        self._lib = lib
        self._dctx = ffi.gc(lib.ZSTD_createDCtx(), lib.ZSTD_freeDCtx)

    def into(self, frame: memoryview, dst: _U8) -> None:
        """Decode ``frame`` (exactly one zstd frame) into all of ``dst``; corrupt otherwise."""
        ffi, lib = self._ffi, self._lib
        n = frame.nbytes
        src = ffi.from_buffer(frame)
        size = lib.ZSTD_findFrameCompressedSize(src, n)
        if lib.ZSTD_isError(size) or size != n:
            raise CorruptObjectError("float section is not exactly one zstd frame")
        got = lib.ZSTD_decompressDCtx(self._dctx, ffi.cast("void *", dst.ctypes.data), dst.size, src, n)
        if lib.ZSTD_isError(got):
            name = ffi.string(lib.ZSTD_getErrorName(got)).decode()
            raise CorruptObjectError(f"zstd (float section): {name}")
        if got != dst.size:
            raise CorruptObjectError(f"float section decoded to {got} bytes, expected {dst.size}")


# ---------------------------------------------------------------- per-thread state


class _ThreadState(threading.local):
    """zstd contexts are not thread-safe and scratch buffers are worth reusing (first touch
    of fresh memory is slow here), so each thread keeps its own."""

    def __init__(self) -> None:
        self.plain: dict[int, zstandard.ZstdCompressor] = {}
        # for float content, assembled into frames by _float_frame: its compressed run needs
        # neither size nor checksum (the enclosing frame has both), nor does a probe
        self.floatc = zstandard.ZstdCompressor(
            compression_params=zstandard.ZstdCompressionParameters(
                write_checksum=False, write_content_size=False, **_FLOAT_PARAMS
            )
        )
        self.dctx = zstandard.ZstdDecompressor()
        self.buffers: dict[str, np.ndarray] = {}
        self._planes: _PlaneCoder | None = None
        self._plane_frames: _PlaneCoder | None = None
        self._sections: dict[int, zstandard.ZstdCompressor] = {}
        self._frames: _FrameDecoder | None = None

    @property
    def planes(self) -> _PlaneCoder:
        if self._planes is None:
            self._planes = _PlaneCoder()
        return self._planes

    @property
    def plane_frames(self) -> _PlaneCoder:
        """The plane coder writing whole frames with their content size (codec 3)."""
        if self._plane_frames is None:
            self._plane_frames = _PlaneCoder(content_size=True)
        return self._plane_frames

    @property
    def frames(self) -> _FrameDecoder:
        if self._frames is None:
            self._frames = _FrameDecoder()
        return self._frames

    def section_compressor(self, level: int) -> zstandard.ZstdCompressor:
        """Plain zstd for codec 3's plain section: no checksum (the chunk id checks it)."""
        c = self._sections.get(level)
        if c is None:
            c = zstandard.ZstdCompressor(level=level, write_checksum=False, write_content_size=True)
            self._sections[level] = c
        return c

    def compressor(self, level: int) -> zstandard.ZstdCompressor:
        c = self.plain.get(level)
        if c is None:
            c = zstandard.ZstdCompressor(level=level, write_checksum=True, write_content_size=True)
            self.plain[level] = c
        return c

    def scratch(self, name: str, dtype: type[np.generic], count: int) -> np.ndarray:
        buf = self.buffers.get(name)
        if buf is None or buf.size < count:
            buf = np.empty(max(count, 1 << 18), dtype=dtype)
            self.buffers[name] = buf
        return buf[:count]


_state = _ThreadState()


# ---------------------------------------------------------------- varints


def _put_varint(out: bytearray, value: int) -> None:
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _get_varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= end or shift > 56:
            raise CorruptObjectError("float codec header: truncated or oversized varint")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7


# ---------------------------------------------------------------- byte planes

_U8 = npt.NDArray[np.uint8]


def _split_planes(src: _U8, kind: FloatKind, count: int, out: _U8) -> None:
    """Write the byte planes of ``count`` little-endian elements, byte 0 of each first.

    ``src`` must start at an address aligned to the element size (else numpy's word loops
    are slower than gathering into aligned scratch first). Shifts and narrowing casts of
    whole words run at several GB/s, where a transposing byte copy does not.
    """
    words = src.view(np.uint16 if kind.itemsize == 2 else np.uint32)
    np.copyto(out[:count], words, casting="unsafe")
    for j in range(1, kind.itemsize):
        np.right_shift(words, 8 * j, out=out[j * count : (j + 1) * count], casting="unsafe")


def _join_planes(planes: Sequence[_U8], out: _U8) -> None:
    """Interleave equally long byte planes (least significant first) into ``out``.

    ``out`` must start at an address aligned to the element size: on an unaligned word
    view numpy falls back to a buffered loop, measured 2.4x slower (:func:`_join_into`
    takes care of that). 4-byte elements are joined from two 16-bit halves, which moves
    ~30% fewer bytes than three shift-and-or passes over whole words.
    """
    count = planes[0].size
    if len(planes) == 2:
        words = out.view(np.uint16)
        np.multiply(planes[1], np.uint16(256), out=words, dtype=np.uint16)
        np.bitwise_or(words, planes[0], out=words)
        return
    halves = _state.scratch("halves", np.uint16, 2 * count)
    for h in range(2):
        half = halves[h * count : (h + 1) * count]
        np.multiply(planes[2 * h + 1], np.uint16(256), out=half, dtype=np.uint16)
        np.bitwise_or(half, planes[2 * h], out=half)
    words = out.view(np.uint32)
    np.copyto(words, halves[count:])
    np.left_shift(words, 16, out=words)
    np.bitwise_or(words, halves[:count], out=words)


def _join_into(planes: Sequence[_U8], out: _U8) -> None:
    """:func:`_join_planes` into ``out`` at any address.

    A chunk cut by CDC puts its elements at any address. If ``out`` starts ``d`` bytes
    before a word boundary, the aligned word ``i`` holds bytes ``d..k-1`` of element
    ``i`` then bytes ``0..d-1`` of element ``i + 1``: the same join over the planes
    rotated by ``d``, the first ``d`` of them one element ahead. Only the partial
    elements at both ends are written bytewise.
    """
    k = len(planes)
    d = -out.ctypes.data % k
    if d == 0:
        _join_planes(planes, out)
        return
    m = planes[0].size - 1  # whole aligned words
    rotated = [p[:m] for p in planes[d:]] + [p[1:] for p in planes[:d]]
    _join_planes(rotated, out[d : d + k * m])
    for b in range(d):
        out[b] = planes[b][0]
    for b in range(d, k):
        out[k * m + b] = planes[b][m]


# ---------------------------------------------------------------- encode


def _header(regions: Sequence[Region]) -> bytes:
    out = bytearray()
    _put_varint(out, len(regions))
    prev = 0
    for r in regions:
        _put_varint(out, r.start - prev)
        _put_varint(out, r.count)
        out.append(int(r.kind))
        prev = r.end
    return bytes(out)


def _transform(src: _U8, regions: Sequence[Region], dst: _U8) -> list[int]:
    """Write the ZSTD_FLOAT ``transformed`` bytes of ``src`` into ``dst`` (same length).

    Returns the offsets in ``dst`` where each byte plane starts.
    """
    cuts: list[int] = []
    pos = prev = 0
    for r in regions:
        n = r.start - prev
        dst[pos : pos + n] = src[prev : r.start]
        pos += n
        prev = r.end
    n = src.size - prev
    dst[pos : pos + n] = src[prev:]
    pos += n
    for kind in _KIND_ORDER:
        rs = [r for r in regions if r.kind is kind]
        if not rs:
            continue
        count = sum(r.count for r in rs)
        nbytes = count * kind.itemsize
        elements = src[rs[0].start : rs[0].end]
        if len(rs) > 1 or elements.ctypes.data % kind.itemsize:
            # gathered into aligned scratch, so that one split covers all regions of a kind
            elements = _state.scratch(f"g{kind.itemsize}", np.uint8, nbytes)
            p = 0
            for r in rs:
                elements[p : p + r.nbytes] = src[r.start : r.end]
                p += r.nbytes
        _split_planes(elements, kind, count, dst[pos : pos + nbytes])
        cuts.extend(range(pos, pos + nbytes, count))
        pos += nbytes
    return cuts


def _probe_shrinks(seg: memoryview) -> bool:
    """Whether zstd would shrink ``seg``, judged from a few small samples of it.

    Mantissa planes are noise: zstd scans, histograms and copies them only to store them as
    raw blocks. Probing ~12 KB costs a few percent of compressing a 640 KB plane.
    """
    n = seg.nbytes
    if n < _MIN_COMPRESSED:
        return False
    k = _PROBE_BYTES
    probes = [seg] if n <= 3 * k else [seg[:k], seg[(n - k) // 2 : (n + k) // 2], seg[n - k :]]
    c = _state.floatc
    return any(len(c.compress(p)) < _PROBE_KEEP * p.nbytes for p in probes)


def _raw_blocks(parts: list[BytesLike], src: memoryview, last: bool) -> None:
    """Append ``src`` to ``parts`` as raw zstd blocks (at most 128 KiB each, a header each)."""
    n = src.nbytes
    for off in range(0, n, _BLOCK_MAX):
        k = min(_BLOCK_MAX, n - off)
        parts.append((k << 3 | (last and off + k == n)).to_bytes(3, "little"))
        parts.append(src[off : off + k])


def _frame_header(content_size: int) -> bytes:
    """A zstd frame header: content size, checksum flag, and the window zstd gives the compressed
    run (not single-segment, whose window would be the whole content: a decoder then needs
    128 KiB, as for frames zstd writes itself, however large the chunk)."""
    if 256 <= content_size < 256 + (1 << 16):
        size_flag, size = 1, (content_size - 256).to_bytes(2, "little")
    elif content_size < 1 << 32:
        size_flag, size = 2, content_size.to_bytes(4, "little")
    else:
        size_flag, size = 3, content_size.to_bytes(8, "little")
    return _ZSTD_MAGIC + bytes([size_flag << 6 | 0x04, (_WINDOW_LOG - 10) << 3]) + size


def _compressed_run(run: memoryview, cuts: Sequence[int]) -> tuple[bytes, int]:
    """A zstd frame of ``run`` without size or checksum, a block ending at each cut; returns it
    and where its first block starts.

    zstd builds one literal Huffman table per block; a block straddling two planes would code
    both with a table fit for neither (measured: a 100 KB bf16 chunk compressed 1.29x instead
    of 1.51x).
    """
    c = _state.floatc
    if not cuts:
        sub = c.compress(run)
    else:
        cobj = c.compressobj(size=run.nbytes)
        parts: list[bytes] = []
        start = 0
        for cut in [*cuts, run.nbytes]:
            parts.append(cobj.compress(run[start:cut]))
            if cut < run.nbytes:
                parts.append(cobj.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK))
            start = cut
        parts.append(cobj.flush())
        sub = b"".join(parts)
    return sub, zstandard.frame_header_size(sub)


def _last_block_at(blocks: memoryview) -> int:
    """Where the header of the last of ``blocks`` (whole zstd blocks) starts."""
    at = 0
    while True:
        bh = blocks[at] | blocks[at + 1] << 8 | blocks[at + 2] << 16
        if bh & 1:
            return at
        at += 3 + (1 if (bh >> 1) & 3 == 1 else bh >> 3)


def _float_frame(content: _U8, cuts: list[int]) -> bytes | None:
    """One zstd frame of ``content`` (``header | transformed``), ``cuts`` being where planes start;
    None if no part of it would shrink (then the chunk is stored RAW).

    A valid frame needs no compressor for the parts that will not shrink (mantissa planes are
    noise): they are written here as raw blocks, which cost a copy where zstd would scan,
    histogram and copy them twice. Only one run of segments, from the first to the last that
    shrink, is compressed. One run, not several: compressed blocks refer back by offsets and
    repeat offsets that carry across the blocks of a frame, so blocks from separate
    compressions could not be joined, while raw blocks change no decoder state.
    """
    n = content.size
    mv = memoryview(content)  # type: ignore[arg-type]
    bounds = [0, *cuts, n]
    segments = [(a, b) for a, b in itertools.pairwise(bounds) if b > a]
    keep = [i for i, (a, b) in enumerate(segments) if _probe_shrinks(mv[a:b])]
    if not keep:
        return None
    lo, hi = segments[keep[0]][0], segments[keep[-1]][1]
    inner = [a - lo for a, _ in segments[keep[0] + 1 : keep[-1] + 1]]
    if keep[0] == 0:  # the bytes outside the regions shrink: text, say, where matches pay
        sub, sub_at = _compressed_run(mv[lo:hi], inner)
        blocks = memoryview(sub)[sub_at:]
    else:  # byte planes only
        blocks = _state.planes.blocks(mv[lo:hi], inner)
    parts: list[BytesLike] = [_frame_header(n)]
    _raw_blocks(parts, mv[:lo], last=False)
    if hi == n:
        parts.append(blocks)
    else:  # raw blocks follow: the run's last block is not the frame's
        at = _last_block_at(blocks)
        parts += [blocks[:at], bytes([blocks[at] & 0xFE]), blocks[at + 1 :]]
        _raw_blocks(parts, mv[hi:], last=True)
    parts.append((xxhash.xxh64_intdigest(mv) & 0xFFFFFFFF).to_bytes(4, "little"))
    return b"".join(parts)


def _kinds(regions: Sequence[Region]) -> list[tuple[FloatKind, list[Region], int]]:
    """The kinds present in ``regions`` in section order, each with its regions and element count."""
    out = []
    for kind in _KIND_ORDER:
        rs = [r for r in regions if r.kind is kind]
        if rs:
            out.append((kind, rs, sum(r.count for r in rs)))
    return out


def _section_shrinks(out: _U8, pos: int, n: int, level: int) -> int:
    """Compress the section ``out[pos : pos + n]`` in place if it shrinks; its stored length."""
    if n < _MIN_COMPRESSED:
        return n
    c = _state.section_compressor(level).compress(memoryview(out[pos : pos + n]))  # type: ignore[arg-type]
    if len(c) >= n:
        return n
    out[pos : pos + len(c)] = np.frombuffer(c, dtype=np.uint8)
    return len(c)


def _planes_blob(src: _U8, regions: Sequence[Region], level: int) -> memoryview | None:
    """The codec-3 blob of ``src`` in per-thread scratch (valid until this thread's next
    encode), or None if no section shrinks.

    Every section is written straight to its place in the blob: a plane that is stored raw is
    split out of the elements into it, and the frame of a compressed one is written into it by
    libzstd, so no byte is copied twice. The sign-and-exponent plane of each kind is always
    compressed; the other planes (mantissa bytes, noise in trained weights) only when a probe
    of a few KB says they shrink (zeros, say, in weights cast up from a narrower type).
    """
    header = _header(regions)
    h = len(header)
    kinds = _kinds(regions)
    n_sections = 1 + sum(kind.itemsize for kind, _, _ in kinds)
    raw_len = src.size
    plain_len = raw_len - sum(r.nbytes for r in regions)
    at = h + 4 * n_sections
    out = _state.scratch("blob3", np.uint8, at + raw_len)
    out[:h] = np.frombuffer(header, dtype=np.uint8)
    lengths = np.zeros(n_sections, dtype="<u4")
    # the plain section: the bytes between the regions, gathered in place, then compressed if worth it
    pos = at
    prev = 0
    for r in regions:
        out[pos : pos + r.start - prev] = src[prev : r.start]
        pos += r.start - prev
        prev = r.end
    out[pos : pos + raw_len - prev] = src[prev:]
    lengths[0] = _section_shrinks(out, at, plain_len, level)
    shrunk = int(lengths[0]) < plain_len
    pos = at + int(lengths[0])
    i = 1
    coder = _state.plane_frames
    for kind, rs, count in kinds:
        k = kind.itemsize
        elements = src[rs[0].start : rs[0].end]
        if len(rs) > 1 or elements.ctypes.data % k:
            # gathered into aligned scratch, so that one split covers all regions of a kind
            elements = _state.scratch(f"g{k}", np.uint8, count * k)
            p = 0
            for r in rs:
                elements[p : p + r.nbytes] = src[r.start : r.end]
                p += r.nbytes
        words = elements.view(np.uint16 if k == 2 else np.uint32)
        for j in range(k):
            top = j == k - 1
            plane = _state.scratch("plane", np.uint8, count) if top else out[pos : pos + count]
            if j:
                np.right_shift(words, 8 * j, out=plane, casting="unsafe")
            else:
                np.copyto(plane, words, casting="unsafe")
            stored = count
            if top or _probe_shrinks(memoryview(plane)):  # type: ignore[arg-type]
                if top:  # the frame goes straight into the blob
                    stored = coder.frame_into(plane, out[pos : pos + count - 1]) or count
                    if stored == count:
                        out[pos : pos + count] = plane
                else:  # the raw plane is in the blob already: its frame is built aside
                    z = _state.scratch("zplane", np.uint8, count - 1)
                    stored = coder.frame_into(plane, z) or count
                    if stored < count:
                        out[pos : pos + stored] = z[:stored]
            shrunk |= stored < count
            lengths[i] = stored
            pos += stored
            i += 1
    if not shrunk:
        return None
    out[h:at] = lengths.view(np.uint8)
    return memoryview(out[:pos])  # type: ignore[arg-type]


def encode_chunk_view(
    raw: BytesLike,
    layout: ByteLayout | None = None,
    level: int = DEFAULT_LEVEL,
    *,
    float_codec: Codec = Codec.FLOAT_PLANES,
) -> tuple[int, BytesLike]:
    """:func:`encode_chunk` for a caller that consumes the result at once (a pack writer): the
    stored bytes may be a view of ``raw`` or of this thread's scratch, valid until its next call."""
    mv = memoryview(raw).cast("B")
    raw_len = mv.nbytes
    if raw_len == 0:
        return Codec.RAW, b""
    if float_codec not in (Codec.ZSTD_FLOAT, Codec.FLOAT_PLANES):
        raise InvalidInputError(f"{float_codec!r} is not a float-aware codec")
    given = layout.regions if layout else ()
    if given and given[-1].end > raw_len:
        raise InvalidInputError(f"byte layout ends at {given[-1].end}, past the chunk ({raw_len} bytes)")
    regions = [r for r in given if r.count >= MIN_GROUP_ELEMENTS]
    st = _state
    stored: BytesLike | None
    if regions and float_codec == Codec.FLOAT_PLANES:
        codec, stored = Codec.FLOAT_PLANES, _planes_blob(np.frombuffer(mv, dtype=np.uint8), regions, level)
    elif regions:
        header = _header(regions)
        h = len(header)
        buf = st.scratch("enc", np.uint8, h + raw_len)
        buf[:h] = np.frombuffer(header, dtype=np.uint8)
        cuts = _transform(np.frombuffer(mv, dtype=np.uint8), regions, buf[h:])
        codec, stored = Codec.ZSTD_FLOAT, _float_frame(buf, [h + c for c in cuts])
    else:
        codec, stored = Codec.ZSTD, st.compressor(level).compress(mv)
    if stored is None or len(stored) >= raw_len:
        return Codec.RAW, mv
    return codec, stored


def encode_chunk(
    raw: BytesLike,
    layout: ByteLayout | None = None,
    level: int = DEFAULT_LEVEL,
    *,
    float_codec: Codec = Codec.FLOAT_PLANES,
) -> tuple[int, bytes]:
    """Compress one chunk; returns ``(codec, stored)`` with ``codec`` a :class:`Codec` value.

    ``layout`` marks float regions (see :func:`layout_for_range`); ``level`` is the zstd
    level for plain data. The result is never larger than ``raw``: data that does not
    shrink is stored as RAW, so reading it back costs a copy, not a decompression.
    ``float_codec`` is FLOAT_PLANES, what pushes write; ZSTD_FLOAT (codec 2) is no longer
    written by a push, and is kept to test its readers against the writer of the stores that
    hold it.
    """
    codec, stored = encode_chunk_view(raw, layout, level, float_codec=float_codec)
    return codec, stored if isinstance(stored, bytes) else bytes(stored)


# ---------------------------------------------------------------- decode


def _check_frame(stored: memoryview, content_size: int) -> None:
    """Check that ``stored`` is exactly one zstd frame declaring ``content_size`` bytes.

    zstd itself would ignore trailing bytes and trust the declared size for its
    allocation, so both are checked here by walking the block headers (RFC 8878).
    """
    n = stored.nbytes
    try:
        params = zstandard.get_frame_parameters(stored)
        pos = zstandard.frame_header_size(stored)
    except zstandard.ZstdError as e:
        raise CorruptObjectError(f"not a zstd frame: {e}") from None
    if not params.has_checksum or params.dict_id or stored[4] & 0x18:
        # We always write a checksum and never a dictionary; bits 3-4 are reserved/unused.
        raise CorruptObjectError("zstd frame header is not one weightvault writes")
    if params.content_size != content_size:
        raise CorruptObjectError(f"zstd frame declares {params.content_size} bytes, expected {content_size}")
    while True:
        if pos + 3 > n:
            raise CorruptObjectError("zstd frame truncated")
        bh = stored[pos] | stored[pos + 1] << 8 | stored[pos + 2] << 16
        btype = (bh >> 1) & 3
        if btype == 3:
            raise CorruptObjectError("zstd frame has a reserved block type")
        pos += 3 + (1 if btype == 1 else bh >> 3)
        if bh & 1:
            break
    pos += 4  # the content checksum
    if pos != n:
        raise CorruptObjectError(f"zstd frame is {pos} bytes but the blob holds {n}")


def _decompress(stored: memoryview, content_size: int) -> bytes:
    _check_frame(stored, content_size)
    try:
        out = _state.dctx.decompress(stored, max_output_size=content_size)
    except zstandard.ZstdError as e:
        raise CorruptObjectError(f"zstd: {e}") from None
    if len(out) != content_size:
        raise CorruptObjectError(f"decompressed {len(out)} bytes, expected {content_size}")
    return out


def _decompress_into(stored: memoryview, dst: memoryview) -> None:
    """Decompress the one frame of ``stored`` into exactly ``dst`` (no fresh allocation)."""
    n = dst.nbytes
    _check_frame(stored, n)
    try:
        reader = _state.dctx.stream_reader(stored, read_across_frames=False)
        got = 0
        while got < n:
            k = reader.readinto(dst[got:])
            if k == 0:
                break
            got += k
        # Reading on to the end of the frame is what makes zstd verify the checksum.
        if got != n or reader.read(1):
            raise CorruptObjectError(f"zstd frame decoded to a size other than {n}")
    except zstandard.ZstdError as e:
        raise CorruptObjectError(f"zstd: {e}") from None


def _parse_header(buf: memoryview, raw_len: int) -> tuple[list[Region], int]:
    """Codec 2's region header: the frame content before its ``raw_len`` transformed bytes."""
    end = buf.nbytes - raw_len
    if end < 0:
        raise CorruptObjectError("float codec frame shorter than its chunk")
    regions, pos = _parse_regions(buf[:end], raw_len)
    if pos != end:
        raise CorruptObjectError("float codec header length does not match the frame size")
    return regions, pos


def _untransform(content: memoryview, raw_len: int, out: _U8) -> None:
    regions, h = _parse_header(content, raw_len)
    t = np.frombuffer(content, dtype=np.uint8, offset=h)
    pos = prev = 0
    for r in regions:
        n = r.start - prev
        out[prev : r.start] = t[pos : pos + n]
        pos += n
        prev = r.end
    n = raw_len - prev
    out[prev:] = t[pos : pos + n]
    pos += n
    for kind in _KIND_ORDER:
        rs = [r for r in regions if r.kind is kind]
        if not rs:
            continue
        count = sum(r.count for r in rs)
        nbytes = count * kind.itemsize
        k = kind.itemsize
        planes = [t[pos + j * count : pos + (j + 1) * count] for j in range(k)]
        pos += nbytes
        if len(rs) == 1:  # the common case: join straight into the output
            _join_into(planes, out[rs[0].start : rs[0].end])
            continue
        # Several regions (small tensors): one join into aligned scratch, then copies.
        joined = _state.scratch(f"g{k}", np.uint8, nbytes)
        _join_planes(planes, joined)
        p = 0
        for r in rs:
            out[r.start : r.end] = joined[p : p + r.nbytes]
            p += r.nbytes


def _parse_regions(buf: memoryview, raw_len: int) -> tuple[list[Region], int]:
    """Codec 3's region header at the start of ``buf``; the regions and where they end."""
    end = buf.nbytes
    n, pos = _get_varint(buf, 0, end)
    if n == 0 or n * 3 > end - pos:
        raise CorruptObjectError(f"float codec header: bad region count {n}")
    regions: list[Region] = []
    prev = 0
    for _ in range(n):
        gap, pos = _get_varint(buf, pos, end)
        count, pos = _get_varint(buf, pos, end)
        if pos >= end:
            raise CorruptObjectError("float codec header truncated")
        try:
            kind = FloatKind(buf[pos])
        except ValueError:
            raise CorruptObjectError(f"float codec header: unknown kind {buf[pos]}") from None
        pos += 1
        r = Region(prev + gap, count, kind)
        if count <= 0 or r.end > raw_len:
            raise CorruptObjectError(f"float codec header: region {r!r} outside {raw_len} bytes")
        regions.append(r)
        prev = r.end
    return regions, pos


def _section(src: memoryview, pos: int, stored: int, raw: int, scratch: str) -> _U8:
    """The raw bytes of the codec-3 section stored at ``src[pos : pos + stored]``."""
    if stored == raw:
        return np.frombuffer(src, dtype=np.uint8, count=raw, offset=pos)
    if stored > raw:
        raise CorruptObjectError(f"float section of {raw} bytes is stored in {stored}")
    out = _state.scratch(scratch, np.uint8, raw)
    _state.frames.into(src[pos : pos + stored], out)
    return out


def _decode_planes(src: memoryview, dst: memoryview) -> None:
    """Decode a codec-3 blob into ``dst`` (docs/format.md, Compression)."""
    raw_len = dst.nbytes
    regions, pos = _parse_regions(src, raw_len)
    kinds = _kinds(regions)
    raws = [raw_len - sum(r.nbytes for r in regions)]
    for kind, _, count in kinds:
        raws += [count] * kind.itemsize
    at = pos + 4 * len(raws)
    if at > src.nbytes:
        raise CorruptObjectError("float blob truncated in its section lengths")
    lengths = [int(x) for x in np.frombuffer(src, dtype="<u4", count=len(raws), offset=pos)]
    if sum(lengths) != src.nbytes - at:
        raise CorruptObjectError(f"float sections hold {sum(lengths)} bytes, the blob {src.nbytes - at}")
    out = np.frombuffer(dst, dtype=np.uint8)
    plain = _section(src, at, lengths[0], raws[0], "dec3p")
    pos = at + lengths[0]
    p = prev = 0
    for r in regions:
        n = r.start - prev
        out[prev : r.start] = plain[p : p + n]
        p += n
        prev = r.end
    out[prev:] = plain[p:]
    i = 1
    for kind, rs, _ in kinds:
        planes = []
        for j in range(kind.itemsize):
            planes.append(_section(src, pos, lengths[i], raws[i], f"dec3_{j}"))
            pos += lengths[i]
            i += 1
        _join_regions(planes, rs, out)


def _join_regions(planes: Sequence[_U8], rs: Sequence[Region], out: _U8) -> None:
    """Join the byte planes of one kind back into its regions of ``out``."""
    if len(rs) == 1:  # the common case: join straight into the output
        _join_into(planes, out[rs[0].start : rs[0].end])
        return
    # Several regions (small tensors): one join into aligned scratch, then copies.
    nbytes = sum(r.nbytes for r in rs)
    joined = _state.scratch(f"g{len(planes)}", np.uint8, nbytes)
    _join_planes(planes, joined)
    p = 0
    for r in rs:
        out[r.start : r.end] = joined[p : p + r.nbytes]
        p += r.nbytes


def _header_bound(raw_len: int) -> int:
    return _MAX_HEADER_PER_BYTE * raw_len + 16


def decode_chunk_into(codec: int, stored: BytesLike, out: bytearray | memoryview) -> None:
    """Decode a blob into ``out``, whose length is the chunk's ``raw_len``.

    For hot loops that reuse an output buffer. Raises ``CorruptObjectError`` on any
    malformed input: wrong sizes, not exactly one zstd frame, failed frame checksum, bad
    float header, unknown codec.
    """
    dst = memoryview(out).cast("B")
    raw_len = dst.nbytes
    src = memoryview(stored).cast("B")
    if codec == Codec.RAW:
        if src.nbytes != raw_len:
            raise CorruptObjectError(f"raw blob is {src.nbytes} bytes, expected {raw_len}")
        dst[:] = src
    elif codec == Codec.ZSTD:
        _decompress_into(src, dst)
    elif codec == Codec.ZSTD_FLOAT:
        try:
            content_size = zstandard.frame_content_size(src)
        except zstandard.ZstdError as e:
            raise CorruptObjectError(f"not a zstd frame: {e}") from None
        if not raw_len < content_size <= raw_len + _header_bound(raw_len):
            raise CorruptObjectError(f"float blob declares {content_size} bytes for a {raw_len}-byte chunk")
        content = memoryview(_state.scratch("dec", np.uint8, content_size))  # type: ignore[arg-type]
        _decompress_into(src, content)
        _untransform(content, raw_len, np.frombuffer(dst, dtype=np.uint8))
    elif codec == Codec.FLOAT_PLANES:
        _decode_planes(src, dst)
    else:
        raise CorruptObjectError(f"unknown compression codec {codec}")


def decode_chunk(codec: int, stored: BytesLike, raw_len: int) -> bytes:
    """Decode a blob written by :func:`encode_chunk`; the result has exactly ``raw_len`` bytes."""
    if raw_len < 0:
        raise CorruptObjectError(f"negative raw length {raw_len}")
    src = memoryview(stored).cast("B")
    if codec == Codec.RAW:
        if src.nbytes != raw_len:
            raise CorruptObjectError(f"raw blob is {src.nbytes} bytes, expected {raw_len}")
        return bytes(src)
    if codec == Codec.ZSTD:
        return _decompress(src, raw_len)
    out = bytearray(raw_len)
    decode_chunk_into(codec, src, out)
    return bytes(out)


def compression_codec(codec: int) -> Codec:
    """The compression part of a pack-table codec byte; corrupt if reserved bits are set."""
    base = codec & ~ENCRYPTED
    if base & ~_COMPRESSION_MASK or base not in Codec._value2member_map_:
        raise CorruptObjectError(f"unknown codec byte 0x{codec:02x}")
    return Codec(base)
