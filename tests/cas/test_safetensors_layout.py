from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.numpy import save_file

from weightvault.cas.compression import Codec, FloatKind, decode_chunk, encode_chunk
from weightvault.cas.safetensors_layout import (
    TensorSpan,
    layout_for_range,
    parse_safetensors_layout,
    safetensors_header_length,
)


def build(tensors: dict[str, tuple[str, list[int], bytes]], metadata: dict[str, str] | None = None) -> bytes:
    """A safetensors file from (dtype, shape, data), laid out in the given order."""
    header: dict[str, Any] = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    pos = 0
    for name, (dtype, shape, data) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [pos, pos + len(data)]}
        pos += len(data)
    return raw_file(header, b"".join(d for _, _, d in tensors.values()))


def raw_file(header: Any, data: bytes, pad: int = 0) -> bytes:
    text = json.dumps(header).encode() + b" " * pad
    return struct.pack("<Q", len(text)) + text + data


def bf16_bytes(x: np.ndarray) -> bytes:
    return (x.astype("<f4").view("<u4") >> 16).astype("<u2").tobytes()


RNG = np.random.default_rng(0)
W32 = (RNG.standard_normal(3000) * 0.02).astype("<f4")


def sample_file() -> bytes:
    return build(
        {
            "ids": ("I64", [10], np.arange(10, dtype="<i8").tobytes()),
            "w.bf16": ("BF16", [30, 50], bf16_bytes(W32[:1500])),
            "w.f16": ("F16", [1000], W32[:1000].astype("<f2").tobytes()),
            "empty": ("F32", [0, 4], b""),
            "w.f32": ("F32", [3000], W32.tobytes()),
            "mask": ("BOOL", [3], b"\x01\x00\x01"),
        },
        metadata={"format": "pt"},
    )


def test_parse_sample_file() -> None:
    data = sample_file()
    total = safetensors_header_length(data[:8], len(data))
    assert total is not None and total > 8
    fl = parse_safetensors_layout(data[:total], len(data))
    assert fl is not None
    base = total + 80
    assert fl.spans == (
        TensorSpan(base, base + 3000, FloatKind.BF16),
        TensorSpan(base + 3000, base + 5000, FloatKind.F16),
        TensorSpan(base + 5000, base + 17000, FloatKind.F32),
    )


def test_file_written_by_safetensors_library(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    save_file(
        {
            "a": W32.reshape(60, 50),
            "b": W32[:7].astype("<f2"),
            "c": np.arange(5, dtype="<i4"),
            "d": W32[:333].astype("<f8"),
        },
        str(path),
    )
    data = path.read_bytes()
    total = safetensors_header_length(data[:8], len(data))
    assert total is not None
    fl = parse_safetensors_layout(data[:total], len(data))
    assert fl is not None
    header = json.loads(data[8:total])
    got = {(s.start, s.end, s.kind) for s in fl.spans}
    want = {
        (total + header[n]["data_offsets"][0], total + header[n]["data_offsets"][1], k)
        for n, k in (("a", FloatKind.F32), ("b", FloatKind.F16))
    }
    assert got == want
    assert data[total + header["a"]["data_offsets"][0] :][:12000] == W32.tobytes()


GOOD_HEADER = {"a": {"dtype": "F16", "shape": [2, 2], "data_offsets": [0, 8]}}


@pytest.mark.parametrize(
    ("header", "data_len"),
    [
        ({"a": {"dtype": "F16", "shape": [2, 2], "data_offsets": [0, 6]}}, 6),  # size != shape
        ({"a": {"dtype": "F16", "shape": [2, 2], "data_offsets": [2, 10]}}, 10),  # hole at start
        (
            {
                "a": {"dtype": "F16", "shape": [4], "data_offsets": [0, 8]},
                "b": {"dtype": "F16", "shape": [4], "data_offsets": [4, 12]},
            },
            12,
        ),  # overlap
        (
            {
                "a": {"dtype": "F16", "shape": [2], "data_offsets": [0, 4]},
                "b": {"dtype": "F16", "shape": [2], "data_offsets": [6, 10]},
            },
            10,
        ),  # hole between
        ({"a": {"dtype": "F17", "shape": [4], "data_offsets": [0, 8]}}, 8),  # unknown dtype
        ({"a": {"dtype": "F16", "shape": [-4], "data_offsets": [0, 8]}}, 8),
        ({"a": {"dtype": "F16", "shape": [True, 4], "data_offsets": [0, 8]}}, 8),
        ({"a": {"dtype": "F16", "shape": [4.0], "data_offsets": [0, 8]}}, 8),
        ({"a": {"dtype": "F16", "shape": [4], "data_offsets": [8, 0]}}, 8),
        ({"a": {"dtype": "F16", "shape": [4], "data_offsets": [0, 8, 9]}}, 8),
        ({"a": {"dtype": "F16", "shape": [4], "data_offsets": [0, 8], "x": 1}}, 8),  # extra key
        ({"a": {"dtype": "F16", "shape": [4]}}, 8),
        ({"a": [1, 2]}, 8),
        ({"__metadata__": {"k": 1}, **GOOD_HEADER}, 8),
        ({"__metadata__": [], **GOOD_HEADER}, 8),
        ([GOOD_HEADER], 8),
        (GOOD_HEADER, 7),  # buffer shorter than the tensors
        (GOOD_HEADER, 9),  # bytes past the last tensor
        ({"a": {"dtype": "F4", "shape": [3], "data_offsets": [0, 2]}}, 2),  # 12 bits: not whole bytes
    ],
)
def test_malformed_headers_give_none(header: Any, data_len: int) -> None:
    data = raw_file(header, b"\0" * data_len)
    assert parse_safetensors_layout(data, len(data)) is None


def test_good_header_parses_and_padding_is_allowed() -> None:
    data = raw_file(GOOD_HEADER, b"\0" * 8, pad=5)
    fl = parse_safetensors_layout(data, len(data))
    assert fl is not None and len(fl.spans) == 1


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"\x05\0\0\0",  # shorter than the length prefix
        struct.pack("<Q", 0) + b"{}",
        struct.pack("<Q", 200_000_000) + b"{}",  # over the 100 MB limit
        struct.pack("<Q", 50) + b"{}",  # header runs past the given bytes
        struct.pack("<Q", 4) + b"[1] ",  # not an object
        struct.pack("<Q", 4) + b"\xff\xfe{}",  # not UTF-8
        struct.pack("<Q", 5) + b'{"a":',  # bad JSON
        struct.pack("<Q", 17) + b'{"a": 1, "a": 2}',  # duplicate key
        struct.pack("<Q", 2) + b"{}" + b"\0",  # data that no tensor covers
    ],
)
def test_malformed_prefixes_give_none(blob: bytes) -> None:
    assert parse_safetensors_layout(blob, len(blob)) is None


def test_header_length_needs_file_size_room() -> None:
    data = sample_file()
    assert safetensors_header_length(data[:8], 20) is None
    assert safetensors_header_length(data[:7]) is None


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_headers_never_raise(data: st.DataObject) -> None:
    blob = bytearray(sample_file())
    total = safetensors_header_length(blob)
    assert total is not None
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, total - 1))
        blob[i] = data.draw(st.integers(0, 255))
    fl = parse_safetensors_layout(bytes(blob), len(blob))
    if fl is not None:
        assert all(s.start >= 8 and s.end <= len(blob) for s in fl.spans)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 20_000), min_size=1, max_size=8))
def test_whole_file_round_trip_at_arbitrary_cuts(sizes: list[int]) -> None:
    """Cut the file anywhere (as CDC does), compress each chunk with its layout, rebuild."""
    data = sample_file()
    total = safetensors_header_length(data, len(data))
    assert total is not None
    fl = parse_safetensors_layout(data[:total], len(data))
    pos, out, stored_total = 0, [], 0
    cuts = iter(sizes)
    while pos < len(data):
        n = min(next(cuts, 4096), len(data) - pos)
        codec, stored = encode_chunk(data[pos : pos + n], layout_for_range(fl, pos, n))
        out.append(decode_chunk(codec, stored, n))
        stored_total += len(stored)
        pos += n
    assert b"".join(out) == data
    assert stored_total <= len(data)


def test_layout_makes_the_file_smaller() -> None:
    data = sample_file()
    total = safetensors_header_length(data, len(data))
    assert total is not None
    fl = parse_safetensors_layout(data[:total], len(data))
    with_layout = without = 0
    codecs = set()
    for pos in range(0, len(data), 5000):  # cuts fall mid-element and across tensors
        n = min(5000, len(data) - pos)
        codec, stored = encode_chunk(data[pos : pos + n], layout_for_range(fl, pos, n))
        codecs.add(codec)
        with_layout += len(stored)
        without += len(encode_chunk(data[pos : pos + n], None)[1])
    assert Codec.FLOAT_PLANES in codecs
    assert with_layout < without * 0.95
