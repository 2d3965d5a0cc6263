"""Safetensors header validation: every rule a loader relies on, with the reason in the error."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import save_file

from weightvault.cas.safetensors_header import MAX_HEADER_LEN, parse_safetensors_header
from weightvault.cas.safetensors_layout import parse_safetensors_layout
from weightvault.core.errors import InvalidInputError, MalformedFileError


def raw(header: Any, data: bytes = b"", n: int | None = None) -> bytes:
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(text) if n is None else n) + text + data


def t(dtype: str, shape: list[int], begin: int, end: int) -> dict[str, Any]:
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


def test_a_file_written_by_the_safetensors_library_parses(tmp_path: Path) -> None:
    arrays = {
        "embed.weight": np.ones((4, 3), dtype=np.float16),
        "ids": np.arange(5, dtype=np.int64),
        "mask": np.zeros((2, 0), dtype=np.bool_),
    }
    save_file(arrays, str(tmp_path / "m.safetensors"), metadata={"format": "pt"})
    data = (tmp_path / "m.safetensors").read_bytes()
    header = parse_safetensors_header(data, len(data))
    got = {x.name: (x.dtype, x.shape, x.nbytes) for x in header.tensors}
    assert got == {"embed.weight": ("F16", (4, 3), 24), "ids": ("I64", (5,), 40), "mask": ("BOOL", (2, 0), 0)}
    assert header.metadata == {"format": "pt"}
    assert header.header_len + header.data_len == len(data)


BAD: list[tuple[str, bytes, str]] = [
    ("short", b"\x05\x00\x00", "shorter than the 8-byte"),
    ("huge header length", raw({}, n=MAX_HEADER_LEN + 1), "over the"),
    ("header past end", raw({}, n=5000), "runs past the end"),
    ("not json", raw(b"{not json}"), "not valid JSON"),
    ("not an object", raw(b"[1, 2, 3]"), "not a JSON object"),
    ("duplicate", raw(b'{"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}, "a": 1}', b"x"), "dupl"),
    ("unknown dtype", raw({"a": t("F128", [1], 0, 16)}, b"x" * 16), "unknown dtype"),
    ("extra field", raw({"a": {**t("U8", [1], 0, 1), "x": 1}}, b"x"), "exactly dtype"),
    ("negative dim", raw({"a": t("U8", [-1], 0, 0)}), "non-negative"),
    ("float dim", raw({"a": t("U8", [1.5], 0, 1)}, b"x"), "non-negative"),
    ("overflow", raw({"a": t("F32", [1 << 40, 1 << 40], 0, 0)}), "overflows"),
    ("zero-size overflow", raw({"a": t("F32", [0, 1 << 70], 0, 0)}), "overflows"),
    ("rank", raw({"a": t("U8", [1] * 65, 0, 1)}, b"x"), "dimensions"),
    ("span mismatch", raw({"a": t("F32", [2], 0, 4)}, b"x" * 4), "needs 8"),
    ("reversed offsets", raw({"a": t("U8", [0], 4, 0)}, b"x" * 4), "increasing"),
    ("hole", raw({"a": t("U8", [2], 0, 2), "b": t("U8", [2], 3, 5)}, b"x" * 5), "hole"),
    ("overlap", raw({"a": t("U8", [4], 0, 4), "b": t("U8", [2], 2, 4)}, b"x" * 4), "overlap"),
    ("not from zero", raw({"a": t("U8", [2], 2, 4)}, b"x" * 4), "hole"),
    ("past end of file", raw({"a": t("U8", [8], 0, 8)}, b"x" * 4), "file has"),
    ("trailing bytes", raw({"a": t("U8", [2], 0, 2)}, b"x" * 6), "file has"),
    ("metadata not strings", raw({"__metadata__": {"a": 1}}), "__metadata__"),
    ("sub-byte remainder", raw({"a": t("F4", [3], 0, 1)}, b"x"), "whole bytes"),
]


@pytest.mark.parametrize(("data", "reason"), [(d, r) for _, d, r in BAD], ids=[n for n, _, _ in BAD])
def test_malformed_headers_are_refused_with_the_reason(data: bytes, reason: str) -> None:
    with pytest.raises(MalformedFileError) as exc:
        parse_safetensors_header(data, len(data))
    assert reason in str(exc.value)
    assert isinstance(exc.value, InvalidInputError) and isinstance(exc.value, ValueError)
    assert parse_safetensors_layout(data, len(data)) is None  # compression treats it as plain bytes


def test_truncated_head_is_refused() -> None:
    data = raw({"a": t("U8", [1], 0, 1)}, b"x")
    with pytest.raises(MalformedFileError, match="truncated"):
        parse_safetensors_header(data[:20], len(data))
