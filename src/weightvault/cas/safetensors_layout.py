"""Where a safetensors file keeps its float tensors, for float-aware compression.

Pure: the caller reads the head of the file (``safetensors_header_length`` says how much)
and passes the bytes. A header that is malformed in any way gives ``None``, never an
error: the file is then compressed plainly, which is always correct, and a push must not
fail because a file merely looks like safetensors. (The parsing and its rules are
``safetensors_header``'s; a push validates ``.safetensors`` files with it before this runs.)
"""

from __future__ import annotations

from typing import Final

from weightvault.cas.compression import (
    BytesLike,
    FileLayout,
    FloatKind,
    TensorSpan,
    layout_for_range,
)
from weightvault.cas.safetensors_header import (
    MAX_HEADER_LEN,
    parse_safetensors_header,
    safetensors_header_length,
)
from weightvault.core.errors import MalformedFileError

__all__ = [
    "MAX_HEADER_LEN",
    "FileLayout",
    "TensorSpan",
    "layout_for_range",
    "parse_safetensors_layout",
    "safetensors_header_length",
]

_FLOAT_KINDS: Final = {"BF16": FloatKind.BF16, "F16": FloatKind.F16, "F32": FloatKind.F32}


def parse_safetensors_layout(head: BytesLike, file_size: int | None = None) -> FileLayout | None:
    """The file-level float layout of a safetensors file from its first bytes.

    ``head`` holds at least ``safetensors_header_length(head)`` bytes; ``None`` for any
    header ``parse_safetensors_header`` refuses.
    """
    try:
        header = parse_safetensors_header(head, file_size)
    except MalformedFileError:
        return None
    total = header.header_len
    spans = tuple(
        TensorSpan(total + t.begin, total + t.end, _FLOAT_KINDS[t.dtype])
        for t in header.tensors
        if t.dtype in _FLOAT_KINDS and t.end > t.begin
    )
    return FileLayout(spans)
