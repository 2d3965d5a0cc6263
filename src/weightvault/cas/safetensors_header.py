"""The header of a safetensors file: parsed and checked against every rule of the format.

Pure: the caller reads the first bytes of the file (``safetensors_header_length`` says how
many) and passes them with the file's size. A push refuses a ``.safetensors`` file whose header
breaks a rule, because loaders trust these numbers to slice memory: an offset past the end, two
tensors sharing bytes or a shape whose element count overflows are how a weights file attacks
or crashes the reader. Float-aware compression reads the same header (``safetensors_layout``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Final

from weightvault.core.errors import MalformedFileError

BytesLike = bytes | bytearray | memoryview

#: The reference implementation refuses headers over 100 MB; so do we.
MAX_HEADER_LEN: Final = 100_000_000
#: Loaders compute sizes in unsigned 64-bit arithmetic: a shape whose bit count passes this overflows.
MAX_BITS: Final = (1 << 64) - 1
#: Frameworks hold each dimension in a signed 64-bit integer.
MAX_DIM: Final = (1 << 63) - 1
#: More dimensions than any framework supports (PyTorch and NumPy stop at 64).
MAX_RANK: Final = 64

#: Bits per element of every dtype the safetensors format defines (sub-byte ones included).
DTYPE_BITS: Final = {
    "BOOL": 8,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "E8M0": 8,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "F64": 64,
    "I64": 64,
    "U64": 64,
    "C64": 64,
}


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """One tensor of the file; ``begin``/``end`` are offsets in the data buffer (after the header)."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.begin

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape), "bytes": self.nbytes}


@dataclass(frozen=True, slots=True)
class SafetensorsHeader:
    #: bytes from the start of the file to the first data byte (8 + JSON length)
    header_len: int
    #: in the order of their data
    tensors: tuple[TensorInfo, ...]
    metadata: dict[str, str]

    @property
    def data_len(self) -> int:
        return self.tensors[-1].end if self.tensors else 0


def safetensors_header_length(prefix: BytesLike, file_size: int | None = None) -> int | None:
    """How many bytes from the start of the file the header needs (8 + JSON length).

    ``prefix`` is at least the first 8 bytes; ``None`` when they cannot start a
    safetensors file (too short, empty or oversized header, header past the end of file).
    """
    try:
        return _header_length(prefix, file_size)
    except MalformedFileError:
        return None


def _header_length(prefix: BytesLike, file_size: int | None) -> int:
    mv = memoryview(prefix).cast("B")
    if mv.nbytes < 8:
        raise MalformedFileError("shorter than the 8-byte header length")
    n = int.from_bytes(mv[:8], "little")
    if n < 2:
        raise MalformedFileError(f"header length {n} is too small for a JSON object")
    if n > MAX_HEADER_LEN:
        raise MalformedFileError(f"header length {n} is over the {MAX_HEADER_LEN}-byte limit")
    if file_size is not None and 8 + n > file_size:
        raise MalformedFileError(f"header length {n} runs past the end of the {file_size}-byte file")
    return 8 + n


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _tensor(name: str, info: object) -> TensorInfo:
    if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
        raise MalformedFileError(f"tensor {name!r} must have exactly dtype, shape and data_offsets")
    dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    bits = DTYPE_BITS.get(dtype) if isinstance(dtype, str) else None
    if bits is None:
        raise MalformedFileError(f"tensor {name!r} has unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
        raise MalformedFileError(f"tensor {name!r} shape must be a list of non-negative integers")
    if len(shape) > MAX_RANK:
        raise MalformedFileError(f"tensor {name!r} has {len(shape)} dimensions (limit {MAX_RANK})")
    nbits = bits
    for d in shape:  # checked at every step, like a loader's checked multiplication
        nbits *= d
        if nbits > MAX_BITS or d > MAX_DIM:
            raise MalformedFileError(f"tensor {name!r} shape {shape} overflows 64-bit sizes")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_int(o) for o in offsets):
        raise MalformedFileError(f"tensor {name!r} data_offsets must be two integers")
    begin, end = offsets
    if begin < 0 or end < begin:
        raise MalformedFileError(f"tensor {name!r} data_offsets {offsets} are not an increasing range")
    if nbits % 8:
        raise MalformedFileError(f"tensor {name!r} of {math.prod(shape)} x {dtype} is not whole bytes")
    if end - begin != nbits // 8:
        raise MalformedFileError(
            f"tensor {name!r} spans {end - begin} bytes but {shape} x {dtype} needs {nbits // 8}"
        )
    return TensorInfo(name, dtype, tuple(shape), begin, end)


def parse_safetensors_header(head: BytesLike, file_size: int | None = None) -> SafetensorsHeader:
    """The header of a safetensors file from its first bytes; raises ``MalformedFileError``.

    ``head`` holds at least ``safetensors_header_length(head)`` bytes. Checks what the
    reference implementation checks: a JSON object of tensors (plus an optional
    ``__metadata__`` of strings) without duplicate keys, known dtypes, non-negative integer
    shapes whose sizes fit 64 bits, offsets that tile the data buffer in order with no hole
    or overlap, each tensor's span equal to product(shape) x itemsize, and (given
    ``file_size``) a buffer ending exactly at the end of the file.
    """
    mv = memoryview(head).cast("B")
    total = _header_length(mv, file_size)
    if mv.nbytes < total:
        raise MalformedFileError(f"truncated: the header needs {total} bytes, got {mv.nbytes}")
    raw = bytes(mv[8:total])
    if raw[:1] != b"{":
        raise MalformedFileError("the header is not a JSON object")
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_reject_duplicates)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise MalformedFileError(f"the header is not valid JSON: {exc}") from None
    if not isinstance(header, dict):
        raise MalformedFileError("the header is not a JSON object")
    metadata: dict[str, str] = {}
    tensors: list[TensorInfo] = []
    for name, info in header.items():
        if name == "__metadata__":
            if not isinstance(info, dict) or not all(isinstance(v, str) for v in info.values()):
                raise MalformedFileError("__metadata__ must map strings to strings")
            metadata = dict(info)
            continue
        tensors.append(_tensor(name, info))
    tensors.sort(key=lambda t: (t.begin, t.end))
    pos = 0
    for t in tensors:
        if t.begin != pos:
            what = "a hole before" if t.begin > pos else "an overlap at"
            raise MalformedFileError(f"data_offsets leave {what} tensor {t.name!r} (offset {t.begin})")
        pos = t.end
    if file_size is not None and total + pos != file_size:
        raise MalformedFileError(f"tensors end at byte {total + pos} but the file has {file_size} bytes")
    return SafetensorsHeader(total, tuple(tensors), metadata)
