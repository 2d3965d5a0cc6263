"""Where a safetensors file keeps its float tensors, for float-aware compression.

Pure: the caller reads the head of the file (``safetensors_header_length`` says how much)
and passes the bytes. A header that is malformed in any way gives ``None``, never an
error: the file is then compressed plainly, which is always correct, and a push must not
fail because a file merely looks like safetensors. (Validating a safetensors file for
the user is a separate, stricter job.)
"""

from __future__ import annotations

import json
import math
from typing import Any, Final

from weightvault.cas.compression import (
    BytesLike,
    FileLayout,
    FloatKind,
    TensorSpan,
    layout_for_range,
)

__all__ = [
    "MAX_HEADER_LEN",
    "FileLayout",
    "TensorSpan",
    "layout_for_range",
    "parse_safetensors_layout",
    "safetensors_header_length",
]

#: The reference implementation refuses headers over 100 MB; so do we.
MAX_HEADER_LEN: Final = 100_000_000

#: Bits per element of every dtype the safetensors format defines (sub-byte ones included).
_DTYPE_BITS: Final = {
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

_FLOAT_KINDS: Final = {"BF16": FloatKind.BF16, "F16": FloatKind.F16, "F32": FloatKind.F32}


def safetensors_header_length(prefix: BytesLike, file_size: int | None = None) -> int | None:
    """How many bytes from the start of the file the header needs (8 + JSON length).

    ``prefix`` is at least the first 8 bytes; ``None`` when they cannot start a
    safetensors file (too short, empty or oversized header, header past the end of file).
    """
    mv = memoryview(prefix).cast("B")
    if mv.nbytes < 8:
        return None
    n = int.from_bytes(mv[:8], "little")
    if n < 2 or n > MAX_HEADER_LEN:
        return None
    if file_size is not None and 8 + n > file_size:
        return None
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


def parse_safetensors_layout(head: BytesLike, file_size: int | None = None) -> FileLayout | None:
    """The file-level float layout of a safetensors file from its first bytes.

    ``head`` holds at least ``safetensors_header_length(head)`` bytes. Checks what the
    reference implementation checks: a JSON object of tensors (plus an optional
    ``__metadata__`` of strings), known dtypes, non-negative integer shapes, offsets that
    tile the data buffer in order with no hole or overlap, each tensor's size equal to
    product(shape) x itemsize, and (given ``file_size``) a buffer ending at the end of file.
    """
    mv = memoryview(head).cast("B")
    total = safetensors_header_length(mv, file_size)
    if total is None or mv.nbytes < total:
        return None
    raw = bytes(mv[8:total])
    if raw[:1] != b"{":
        return None
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_reject_duplicates)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(header, dict):
        return None
    entries: list[tuple[int, int, str]] = []
    for name, info in header.items():
        if name == "__metadata__":
            if not isinstance(info, dict) or not all(isinstance(v, str) for v in info.values()):
                return None
            continue
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            return None
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        bits = _DTYPE_BITS.get(dtype) if isinstance(dtype, str) else None
        if bits is None or not isinstance(shape, list) or not isinstance(offsets, list):
            return None
        if not all(_is_int(d) and d >= 0 for d in shape):
            return None
        if len(offsets) != 2 or not all(_is_int(o) for o in offsets):
            return None
        begin, end = offsets
        nbits = math.prod(shape) * bits
        if begin < 0 or end < begin or nbits % 8 or end - begin != nbits // 8:
            return None
        entries.append((begin, end, dtype))
    entries.sort()
    pos = 0
    for begin, end, _ in entries:
        if begin != pos:  # a hole or an overlap
            return None
        pos = end
    if file_size is not None and total + pos != file_size:
        return None
    spans = tuple(
        TensorSpan(total + begin, total + end, _FLOAT_KINDS[dtype])
        for begin, end, dtype in entries
        if dtype in _FLOAT_KINDS and end > begin
    )
    return FileLayout(spans)
