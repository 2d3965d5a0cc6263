"""Safe formats in the vault: malformed safetensors refused before any write; tensor listings
that read only the headers, by range."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import save_file

from weightvault.core.errors import MalformedFileError, NotFoundError
from weightvault.storage.local import LocalBackend
from weightvault.vault.config import load_settings
from weightvault.vault.tensors import list_tensors
from weightvault.vault.vault import Vault

from ..conftest import run_cli


def store_objects(vault: Vault) -> list[str]:
    return sorted(o.key for o in vault.backend.list("") if not o.key.startswith((".tmp/", "config")))


def bad_safetensors(path: Path) -> Path:
    """A header whose second tensor overlaps the first."""
    header = {
        "a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
        "b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]},
    }
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + bytes(16))
    return path


def test_malformed_safetensors_is_refused_and_nothing_is_written(
    vault: Vault, model_dir: Path, tmp_path: Path
) -> None:
    vault.push("good", model_dir)
    before = store_objects(vault)
    bad_safetensors(model_dir / "extra.safetensors")
    with pytest.raises(MalformedFileError, match=r"extra\.safetensors.*overlap"):
        vault.push("m", model_dir)
    assert store_objects(vault) == before
    assert [m.name for m in vault.list_models()] == ["good"]


def test_cli_refuses_a_malformed_safetensors_file_in_one_line(home: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    bad_safetensors(src / "model.safetensors")
    r = run_cli(home, "push", "m", str(src))
    assert r.returncode == 4
    assert r.stderr.strip().count("\n") == 0
    assert "model.safetensors is not a valid safetensors file" in r.stderr
    assert "Traceback" not in r.stderr
    assert run_cli(home, "ls", "--json").stdout.strip() == "[]"


class CountingBackend:
    """A local store that counts the pack bytes read through it (and hides the fd fast path,
    so every pack read is a ranged read through the backend)."""

    def __init__(self, inner: LocalBackend) -> None:
        self._inner = inner
        self.pack_bytes_read = 0
        self.whole_pack_reads = 0

    def __getattr__(self, name: str) -> Any:
        if name == "open_fd":
            raise AttributeError(name)
        return getattr(self._inner, name)

    def get(self, key: str) -> bytes:
        data = self._inner.get(key)
        if key.startswith("packs/"):
            self.whole_pack_reads += 1
            self.pack_bytes_read += len(data)
        return data

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        data = self._inner.get_range(key, offset, length)
        if key.startswith("packs/"):
            self.pack_bytes_read += len(data)
        return data


def big_checkpoint(path: Path) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(5)
    arrays = {
        f"layers.{i}.weight": rng.standard_normal((512, 1024)).astype(np.float32) for i in range(6)
    }  # 12 MiB of incompressible floats: many chunks
    arrays["layers.0.bias"] = np.zeros(7, dtype=np.float16)
    arrays["ids"] = np.arange(3, dtype=np.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(arrays, str(path), metadata={"format": "pt"})
    return arrays


def test_tensors_reads_only_the_header_chunks(tmp_path: Path) -> None:
    src = tmp_path / "src"
    arrays = big_checkpoint(src / "model.safetensors")
    (src / "config.json").write_text("{}")
    settings = load_settings(tmp_path / "home", cache_enabled=False)
    counting = CountingBackend(LocalBackend(settings.store_path))
    with Vault(settings, backend=counting) as vault:  # type: ignore[arg-type]
        vault.push("m", src, version="v1")
        size = (src / "model.safetensors").stat().st_size
        counting.pack_bytes_read = 0
        listings = list_tensors(vault, "m@v1")
        assert [x.path for x in listings] == ["model.safetensors"]
        got = {t.name: (t.dtype, t.shape, t.nbytes) for t in listings[0].header.tensors}
        dtypes = {"float32": "F32", "float16": "F16", "int64": "I64"}
        assert got == {k: (dtypes[str(a.dtype)], a.shape, a.nbytes) for k, a in arrays.items()}
        assert listings[0].header.metadata == {"format": "pt"}
        # the header lives in the first chunk: one chunk (at most 4 MiB) is fetched, not the 12 MiB file
        assert 0 < counting.pack_bytes_read <= (4 << 20) < size
        assert counting.whole_pack_reads == 0
        assert vault.tensors("m@v1", "model.safetensors")[0].header == listings[0].header
        with pytest.raises(NotFoundError):
            list_tensors(vault, "m@v1", "nope.safetensors")


def test_tensors_cli_lists_name_dtype_shape_and_bytes(home: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    arrays = {"embed": np.ones((3, 5), dtype=np.float16), "head": np.zeros(4, dtype=np.float32)}
    save_file(arrays, str(src / "model.safetensors"))
    assert run_cli(home, "push", "m", str(src), "-q").returncode == 0
    r = run_cli(home, "tensors", "m", "--json")
    assert r.returncode == 0, r.stderr
    listing = json.loads(r.stdout)
    assert listing[0]["path"] == "model.safetensors"
    assert sorted(listing[0]["tensors"], key=lambda t: t["name"]) == [
        {"name": "embed", "dtype": "F16", "shape": [3, 5], "bytes": 30},
        {"name": "head", "dtype": "F32", "shape": [4], "bytes": 16},
    ]
    table = run_cli(home, "tensors", "m", "model.safetensors")
    assert table.returncode == 0 and "embed" in table.stdout and "[3, 5]" in table.stdout
    missing = run_cli(home, "tensors", "m", "other.safetensors")
    assert missing.returncode == 3 and "no file 'other.safetensors'" in missing.stderr


def test_tensors_of_an_encrypted_model(tmp_path: Path) -> None:
    src = tmp_path / "src"
    arrays = big_checkpoint(src / "model.safetensors")
    with Vault.open(tmp_path / "home", encryption={"enabled": True}) as vault:
        vault.push("secret", src)
        assert vault.keys.domain("secret") is not None  # the chunks are sealed
        names = {t.name for t in vault.tensors("secret")[0].header.tensors}
        assert names == set(arrays)


def test_a_header_longer_than_the_first_chunk(vault: Vault, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    notes = "".join(f"{i:08d}" for i in range(800_000))  # 6.4 MB of metadata: past any single chunk
    save_file({"w": np.ones(3, dtype=np.float32)}, str(src / "model.safetensors"), metadata={"notes": notes})
    vault.push("m", src)
    (listing,) = vault.tensors("m")
    assert listing.header.metadata["notes"] == notes
    assert [(t.name, t.shape) for t in listing.header.tensors] == [("w", (3,))]
