"""Pickle-based checkpoints at push: scanned by content, findings kept with the version and shown,
dangerous ones refused on request before anything is written. Nothing is ever unpickled."""

from __future__ import annotations

import io
import json
import pickle
from pathlib import Path
from typing import Any

import pytest
import torch

from weightvault.core import layout
from weightvault.core.errors import UnsafeFileError
from weightvault.core.manifest import Manifest
from weightvault.vault.vault import Vault

from ..conftest import run_cli, tree_bytes


class WritesAMarker:
    """Unpickling this would create ``path``; the tests check that it never exists."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, (f"open({str(self.path)!r}, 'w').write('pwned')",))


def checkpoint_folder(root: Path, marker: Path) -> Path:
    root.mkdir(parents=True)
    torch.save({"w": torch.randn(8, 8)}, root / "pytorch_model.bin")  # zip, safe
    with open(root / "optimizer.pt", "wb") as f:  # legacy format, safe
        torch.save({"step": torch.tensor(3)}, f, _use_new_zipfile_serialization=False)
    (root / "training_args.txt").write_bytes(pickle.dumps(WritesAMarker(marker), protocol=4))  # by content
    (root / "config.json").write_text('{"model_type": "toy"}')
    return root


def test_findings_are_stored_with_the_version_and_shown(vault: Vault, tmp_path: Path, home: Path) -> None:
    marker = tmp_path / "pwned"
    src = checkpoint_folder(tmp_path / "ckpt", marker)
    result = vault.push("toy", src, version="v1")
    info = vault.show("toy@v1")
    assert set(info.safety) == {"pytorch_model.bin", "optimizer.pt", "training_args.txt"}
    assert info.safety["pytorch_model.bin"]["verdict"] == "safe"
    assert info.safety["pytorch_model.bin"]["format"] == "zip"
    assert info.safety["optimizer.pt"]["verdict"] == "safe"
    bad = info.safety["training_args.txt"]
    assert bad["verdict"] == "dangerous" and ["builtins", "exec", "dangerous"] in bad["globals"]
    # kept in the manifest in the store, so recover and every replica have it
    commit = result.version.commit
    manifest = Manifest.from_bytes(vault.backend.get(layout.manifest_key(commit)))
    assert manifest.safety["training_args.txt"]["verdict"] == "dangerous"
    vault.recover()
    assert vault.show("toy@v1").safety == info.safety
    vault.close()

    shown = run_cli(home, "show", "toy@v1")
    assert shown.returncode == 0
    assert "pickle dangerous training_args.txt: imports builtins.exec" in shown.stdout
    assert "pickle safe pytorch_model.bin" in shown.stdout
    as_json = json.loads(run_cli(home, "show", "toy@v1", "--json").stdout)
    assert as_json["safety"]["training_args.txt"]["verdict"] == "dangerous"
    assert run_cli(home, "pull", "toy@v1", str(tmp_path / "out"), "-q").returncode == 0
    assert tree_bytes(tmp_path / "out") == tree_bytes(src)
    assert not marker.exists()  # nothing was unpickled along the way


def test_versions_without_pickles_keep_their_manifest_bytes(vault: Vault, model_dir: Path) -> None:
    info = vault.push("m", model_dir).version
    body = vault.backend.get(layout.manifest_key(info.commit))
    assert b"safety" not in body and vault.show("m").safety == {}


def test_refuse_unsafe_rejects_before_anything_is_written(tmp_path: Path, home: Path) -> None:
    marker = tmp_path / "pwned"
    src = checkpoint_folder(tmp_path / "ckpt", marker)
    with Vault.open(home) as vault:
        with pytest.raises(UnsafeFileError, match=r"training_args\.txt \(builtins\.exec\)"):
            vault.push("toy", src, refuse_unsafe=True)
        assert vault.list_models() == []
        assert not any(vault.backend.list("packs/")) and not any(vault.backend.list("manifests/"))
    r = run_cli(home, "push", "toy", str(src), "--refuse-unsafe")
    assert r.returncode == 4 and r.stderr.strip().count("\n") == 0
    assert r.stderr.strip().startswith("error: refusing pickles that would run code when loaded")
    # the vault setting does the same for every push
    (home / "config.yaml").write_text("refuse_unsafe_pickles: true\n")
    r = run_cli(home, "push", "toy", str(src))
    assert r.returncode == 4 and "training_args.txt" in r.stderr
    (src / "training_args.txt").unlink()
    assert run_cli(home, "push", "toy", str(src), "-q").returncode == 0  # safe pickles pass
    assert not marker.exists()


def test_a_pickle_named_like_anything_is_found_by_content(vault: Vault, tmp_path: Path) -> None:
    src = tmp_path / "s"
    src.mkdir()
    buf = io.BytesIO()
    torch.save({"w": torch.zeros(2)}, buf)
    (src / "weights.data").write_bytes(buf.getvalue())
    (src / "notes.pkl").write_text("not a pickle at all, despite the name\n")
    info = vault.push("m", src).version
    assert set(vault.show(info.model).safety) == {"weights.data"}
