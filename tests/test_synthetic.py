"""The synthetic checkpoint generator: valid safetensors, sizes, determinism and the two edits."""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file

from weightvault.demo.synthetic import (
    DTYPES,
    _f32_to_bf16_bits,
    bf16_bits_to_f32,
    change_one_tensor,
    generate_model,
    insert_tensor,
    main,
    parse_size,
    plan_model,
    read_safetensors_header,
)

MiB = 1 << 20


def _shards(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.safetensors"))


def _tensors(header: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    items = [(k, v) for k, v in header.items() if k != "__metadata__"]
    return sorted(items, key=lambda kv: kv[1]["data_offsets"][0])


def _check_layout(path: Path) -> tuple[int, dict[str, Any]]:
    """Check the safetensors layout by hand; return (data_start, header)."""
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    assert n % 8 == 0, "header must be padded to a multiple of 8 bytes"
    text = raw[8 : 8 + n].decode()
    assert text == text.rstrip() + " " * (len(text) - len(text.rstrip())), "padding must be spaces"
    header = json.loads(text)
    data_start, header2 = read_safetensors_header(path)
    assert data_start == 8 + n and header2 == header
    expected = 0
    for _, info in _tensors(header):
        start, end = info["data_offsets"]
        assert start == expected, "tensor data must be contiguous"
        elem = next(v[1] for v in DTYPES.values() if v[0] == info["dtype"])
        assert end - start == elem * int(np.prod(info["shape"]))
        expected = end
    assert data_start + expected == len(raw), "data must end at the end of the file"
    return data_start, header


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def bf16_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("bf16")
    generate_model(dest, 4 * MiB, shards=3, dtype="bf16", seed=0)
    return dest


def test_files_written(bf16_model: Path) -> None:
    names = sorted(p.name for p in bf16_model.iterdir())
    assert names == sorted(
        [
            "model-00001-of-00003.safetensors",
            "model-00002-of-00003.safetensors",
            "model-00003-of-00003.safetensors",
            "model.safetensors.index.json",
            "config.json",
            "tokenizer.json",
            "tokenizer_config.json",
            "generation_config.json",
        ]
    )
    config = json.loads((bf16_model / "config.json").read_text())
    assert config["torch_dtype"] == "bfloat16"
    assert config["model_type"] == "llama"
    tok = json.loads((bf16_model / "tokenizer.json").read_text())
    vocab = tok["model"]["vocab"]
    assert sorted(vocab.values()) == list(range(len(vocab)))
    assert len(vocab) <= config["vocab_size"]
    for merge in tok["model"]["merges"][:500]:
        left, right = merge.split(" ")
        assert left in vocab and right in vocab and left + right in vocab


def test_bf16_shards_are_valid_safetensors(bf16_model: Path) -> None:
    index = json.loads((bf16_model / "model.safetensors.index.json").read_text())
    seen: dict[str, str] = {}
    total = 0
    for shard in _shards(bf16_model):
        data_start, header = _check_layout(shard)
        assert header["__metadata__"] == {"format": "pt"}
        with safe_open(str(shard), framework="numpy") as st:
            keys = set(st.keys())
            assert keys == {k for k in header if k != "__metadata__"}
            for key in keys:
                sl = st.get_slice(key)
                assert sl.get_dtype() == "BF16"
                assert list(sl.get_shape()) == header[key]["shape"]
        bits = np.fromfile(shard, dtype=np.uint16, offset=data_start)
        for name, info in _tensors(header):
            start, end = info["data_offsets"]
            values = bf16_bits_to_f32(bits[start // 2 : end // 2])
            assert np.isfinite(values).all()
            if name.endswith("norm.weight"):
                assert abs(float(values.mean()) - 1.0) < 0.4, name
            else:
                assert abs(float(values.mean())) < 0.01, name
                assert 0.002 < float(values.std()) < 0.08, name
            seen[name] = shard.name
            total += end - start
    assert seen == index["weight_map"]
    assert total == index["metadata"]["total_size"]


@pytest.mark.parametrize("dtype", ["fp16", "fp32"])
def test_fp16_fp32_load_with_safetensors(tmp_path: Path, dtype: str) -> None:
    generate_model(tmp_path, 2 * MiB, shards=2, dtype=dtype, seed=3)
    want = np.float16 if dtype == "fp16" else np.float32
    names = 0
    for shard in _shards(tmp_path):
        _, header = _check_layout(shard)
        tensors = load_file(str(shard))
        assert set(tensors) == {k for k in header if k != "__metadata__"}
        for name, array in tensors.items():
            names += 1
            assert array.dtype == want
            assert list(array.shape) == header[name]["shape"]
            assert np.isfinite(array).all()
            if not name.endswith("norm.weight"):
                assert 0.002 < float(array.astype(np.float64).std()) < 0.08
    assert names == len(plan_model(2 * MiB, dtype).tensors)


@pytest.mark.parametrize("size", [1 * MiB, 3 * MiB, 64 * MiB])
def test_total_size_close_to_request(tmp_path: Path, size: int) -> None:
    generate_model(tmp_path, size, shards=4, seed=0)
    shards = _shards(tmp_path)
    assert len(shards) == 4
    tensor_bytes = sum(p.stat().st_size - read_safetensors_header(p)[0] for p in shards)
    file_bytes = sum(p.stat().st_size for p in shards)
    assert abs(tensor_bytes - size) <= 0.01 * size
    assert abs(file_bytes - size) <= 0.02 * size
    # shards are balanced
    sizes = [p.stat().st_size for p in shards]
    assert max(sizes) < 1.6 * min(sizes)


def test_single_shard_uses_transformers_names(tmp_path: Path) -> None:
    generate_model(tmp_path, 1 * MiB, shards=1)
    assert (tmp_path / "model.safetensors").exists()
    assert not (tmp_path / "model.safetensors.index.json").exists()
    _check_layout(tmp_path / "model.safetensors")


def test_deterministic_for_a_seed(tmp_path: Path) -> None:
    generate_model(tmp_path / "a", 3 * MiB, shards=2, seed=7)
    generate_model(tmp_path / "b", 3 * MiB, shards=2, seed=7)
    generate_model(tmp_path / "c", 3 * MiB, shards=2, seed=8)
    a, b, c = _digest(tmp_path / "a"), _digest(tmp_path / "b"), _digest(tmp_path / "c")
    assert a == b
    for name in a:
        if name.endswith(".safetensors"):
            assert a[name] != c[name]


def _bf16_reference(x: float) -> int:
    """Nearest bf16 to a finite float32 by exhaustive comparison, ties to even."""
    bits = struct.unpack("<I", struct.pack("<f", x))[0]
    lo = bits >> 16
    candidates = [lo, lo + 1]

    def value(b: int) -> float:
        return float(struct.unpack("<f", struct.pack("<I", (b & 0xFFFF) << 16))[0])

    best = min(candidates, key=lambda b: (abs(value(b) - x), b & 1))
    return best & 0xFFFF


def test_bf16_round_to_nearest_even() -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate(
        [
            rng.normal(0, 0.02, 2000).astype(np.float32),
            rng.normal(0, 100, 500).astype(np.float32),
            # exact ties: lower half exactly 0x8000, with even and odd upper halves
            np.array([0x3F808000, 0x3F818000, 0xBF808000, 0xBF818000], dtype=np.uint32).view(np.float32),
            np.array([1.0, -2.0, 0.0, 3.0e38], dtype=np.float32),
        ]
    )
    got = _f32_to_bf16_bits(x)
    want = np.array([_bf16_reference(float(v)) for v in x], dtype=np.uint16)
    np.testing.assert_array_equal(got, want)
    assert got[-4] == 0x3F80  # 1.0
    assert list(got[-8:-4]) == [0x3F80, 0x3F82, 0xBF80, 0xBF82]


def test_change_one_tensor(tmp_path: Path) -> None:
    generate_model(tmp_path, 8 * MiB, shards=2, seed=0)
    shard = _shards(tmp_path)[0]
    before = shard.read_bytes()
    data_start, header = read_safetensors_header(shard)
    region = change_one_tensor(shard, fraction=0.01, seed=1)
    after = shard.read_bytes()

    assert len(after) == len(before)
    assert after[:data_start] == before[:data_start], "header must not change"
    assert region.length == int(len(before) * 0.01) // 2 * 2
    info = header[region.tensor]
    t_start, t_end = (data_start + o for o in info["data_offsets"])
    assert t_start <= region.offset and region.offset + region.length <= t_end
    assert (region.offset - t_start) % 2 == 0

    a = np.frombuffer(before, dtype=np.uint8)
    b = np.frombuffer(after, dtype=np.uint8)
    diff = np.flatnonzero(a != b)
    assert diff.size > 0.5 * region.length
    assert diff.min() >= region.offset and diff.max() < region.offset + region.length
    assert diff.min() < region.offset + 8 and diff.max() >= region.offset + region.length - 8
    # new values are still weight-like
    new = bf16_bits_to_f32(b[region.offset : region.offset + region.length].view(np.uint16))
    assert np.isfinite(new).all() and 0.005 < float(new.std()) < 0.08
    _check_layout(shard)


def test_change_one_tensor_rejects_too_large_region(tmp_path: Path) -> None:
    generate_model(tmp_path, 1 * MiB, shards=4, seed=0)
    with pytest.raises(ValueError, match="no tensor holds"):
        change_one_tensor(_shards(tmp_path)[0], fraction=0.9)


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_insert_tensor(tmp_path: Path, dtype: str) -> None:
    generate_model(tmp_path, 4 * MiB, shards=2, dtype=dtype, seed=0)
    shard = _shards(tmp_path)[1]
    before = shard.read_bytes()
    old_start, old_header = read_safetensors_header(shard)
    index_before = json.loads((tmp_path / "model.safetensors.index.json").read_text())

    ins = insert_tensor(shard, 300_000, seed=2)
    after = shard.read_bytes()
    new_start, new_header = _check_layout(shard)

    assert set(new_header) == set(old_header) | {ins.tensor}
    assert ins.length <= 300_000 and ins.length > 250_000
    assert len(after) == len(before) + ins.length + ins.header_growth
    assert ins.header_growth == new_start - old_start > 0
    # the new tensor sits in the middle of the header order and of the data order
    old_keys = [k for k in old_header if k != "__metadata__"]
    new_keys = [k for k in new_header if k != "__metadata__"]
    assert new_keys.index(ins.tensor) == len(old_keys) // 2
    assert [k for k in new_keys if k != ins.tensor] == old_keys
    data_order = [k for k, _ in _tensors(new_header)]
    assert data_order.index(ins.tensor) == len(old_keys) // 2
    assert new_start + new_header[ins.tensor]["data_offsets"][0] == ins.offset
    # every other tensor keeps its bytes
    for name in old_keys:
        s0, e0 = old_header[name]["data_offsets"]
        s1, e1 = new_header[name]["data_offsets"]
        assert before[old_start + s0 : old_start + e0] == after[new_start + s1 : new_start + e1], name
    # tensors before the insertion point keep their offsets, the later ones shift by its length
    for pos, name in enumerate(k for k in data_order if k != ins.tensor):
        shift = 0 if pos < len(old_keys) // 2 else ins.length
        assert new_header[name]["data_offsets"][0] == old_header[name]["data_offsets"][0] + shift
    # the index lists the new tensor
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert index["weight_map"][ins.tensor] == shard.name
    assert index["metadata"]["total_size"] == index_before["metadata"]["total_size"] + ins.length
    if dtype == "fp16":
        tensors = load_file(str(shard))
        assert tensors[ins.tensor].dtype == np.float16
        assert 0.005 < float(tensors[ins.tensor].astype(np.float64).std()) < 0.08


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "m"), "--size", "2MiB", "--shards", "2"]) == 0
    out = capsys.readouterr().out
    assert "total" in out and "model-00002-of-00002.safetensors" in out
    assert len(_shards(tmp_path / "m")) == 2


@pytest.mark.parametrize(
    ("text", "value"),
    [("1048576", 1 << 20), ("64MiB", 64 << 20), ("2GiB", 2 << 30), ("1.5GB", 1_500_000_000), ("10k", 10_000)],
)
def test_parse_size(text: str, value: int) -> None:
    assert parse_size(text) == value


def test_parse_size_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        parse_size("lots")


_PEAK_RSS_CHILD = """
import sys
from pathlib import Path
from weightvault.demo.synthetic import generate_model
generate_model(Path(sys.argv[1]), 256 << 20, shards=2)
# VmHWM is this process's own peak RSS (getrusage would include what exec inherited)
status = Path("/proc/self/status").read_text()
print(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc (Linux)")
def test_generation_streams_in_bounded_memory(tmp_path: Path) -> None:
    """A 256 MiB model is generated with a peak RSS far below the model size."""
    out = subprocess.run(
        [sys.executable, "-c", _PEAK_RSS_CHILD, str(tmp_path)], check=True, capture_output=True, text=True
    ).stdout
    peak_kib = int(out.strip().splitlines()[-1])
    assert peak_kib < 128 * 1024, f"peak RSS {peak_kib} KiB"
    total = sum(p.stat().st_size for p in _shards(tmp_path))
    assert total > 250 * MiB
    shutil.rmtree(tmp_path)
