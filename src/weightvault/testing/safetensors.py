"""Valid safetensors headers for test files of any size (a push refuses malformed ones)."""

from __future__ import annotations

import json
import struct


def _header(n: int) -> bytes:
    return json.dumps({"w": {"dtype": "U8", "shape": [n], "data_offsets": [0, n]}}).encode()


def safetensors_prefix(size: int) -> bytes:
    """The header of a ``size``-byte safetensors file holding one U8 tensor (its raw bytes follow).

    The header is padded with spaces (as the format allows) where the data length's digits
    would not add up exactly."""
    low = max(0, size - 8 - len(_header(size)))
    for n in range(min(size, low + 64), low - 1, -1):
        text = _header(n)
        pad = size - 8 - len(text) - n
        if pad >= 0:
            text += b" " * pad
            return struct.pack("<Q", len(text)) + text
    raise ValueError(f"no safetensors header fits in {size} bytes")
