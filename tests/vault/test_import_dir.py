"""import dir: Hub cache repos, snapshots and save_pretrained folders, pinned to upstream commits."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from weightvault.core.errors import SourceNotFoundError, UnsafePathError
from weightvault.hub.importer import import_dir
from weightvault.vault.vault import Vault

from ..conftest import run_cli, tree_bytes, write_random
from .test_lineage import adapter

C1 = "1" * 8 + "a" * 32
C2 = "2" * 8 + "b" * 32


def cache_snapshot(repo_dir: Path, commit: str, files: dict[str, bytes], branch: str | None = "main") -> Path:
    """One snapshot in the Hub cache's layout: content in blobs/<etag>, relative symlinks from
    snapshots/<commit>/, and refs/<branch> holding the commit."""
    snap = repo_dir / "snapshots" / commit
    for rel, data in files.items():
        etag = hashlib.sha256(data).hexdigest()
        blob = repo_dir / "blobs" / etag
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snap / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    if branch is not None:
        (repo_dir / "refs").mkdir(exist_ok=True)
        (repo_dir / "refs" / branch).write_text(commit)
    return snap


def tiny_files(seed: int = 0) -> dict[str, bytes]:
    weights = write_random(Path(os.environ["WV_TMP"]) / f"w{seed}.safetensors", 300_000, seed=seed)
    return {
        "config.json": json.dumps({"model_type": "bert", "hidden_size": 8}).encode(),
        "model.safetensors": weights.read_bytes(),
        "tokenizer/vocab.txt": b"[PAD]\n[UNK]\nhello\n",
    }


@pytest.fixture(autouse=True)
def _scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "scratch").mkdir()
    monkeypatch.setenv("WV_TMP", str(tmp_path / "scratch"))


def test_cache_repo_import_pins_the_commit_and_repeats_as_a_no_op(vault: Vault, tmp_path: Path) -> None:
    repo_dir = tmp_path / "hub" / "models--org--tiny"
    snap = cache_snapshot(repo_dir, C1, tiny_files())
    first = import_dir(vault, repo_dir)
    assert first.imported and first.version.model == "org/tiny"
    edge = {"kind": "upstream", "repo": "org/tiny", "commit": C1, "revision": "main", "source": "hub-cache"}
    assert vault.show("org/tiny").lineage == (edge,)
    vault.pull("org/tiny", tmp_path / "out")
    assert tree_bytes(tmp_path / "out") == tree_bytes(snap)  # the files, not the links

    objects = sorted(o.key for o in vault.backend.list(""))
    again = import_dir(vault, repo_dir)
    assert not again.imported and again.version.commit == first.version.commit
    assert sorted(o.key for o in vault.backend.list("")) == objects
    assert len(vault.list_versions("org/tiny")) == 1

    # the branch moves upstream: a new version, pinned to the new commit, storing only what changed
    changed = {**tiny_files(), "config.json": b'{"model_type": "bert", "hidden_size": 16}'}
    cache_snapshot(repo_dir, C2, changed)
    before = vault.stats()["pack_bytes"]
    moved = import_dir(vault, repo_dir)
    assert moved.imported and vault.show("org/tiny").lineage[0]["commit"] == C2
    assert vault.stats()["pack_bytes"] - before < 1000  # the weights were not stored again
    # an older commit by --revision is the earlier import: a no-op
    assert import_dir(vault, repo_dir, revision=C1).version.commit == first.version.commit


def test_snapshot_folder_and_errors(vault: Vault, tmp_path: Path) -> None:
    repo_dir = tmp_path / "models--tiny"
    snap = cache_snapshot(repo_dir, C1, tiny_files(), branch=None)
    result = import_dir(vault, snap, name="mine")
    assert result.version.model == "mine"
    assert vault.show("mine").lineage[0] == {
        "kind": "upstream", "repo": "tiny", "commit": C1, "revision": None, "source": "hub-cache",
    }  # fmt: skip
    with pytest.raises(SourceNotFoundError, match="no revision 'main'"):
        import_dir(vault, repo_dir)
    outside = tmp_path / "secret.txt"
    outside.write_text("not part of the repo")
    (snap / "leak.txt").symlink_to(outside)
    with pytest.raises(UnsafePathError, match=r"leak\.txt"):
        import_dir(vault, snap, name="other")
    assert [m.name for m in vault.list_models()] == ["mine"]


def test_save_pretrained_folder(vault: Vault, tmp_path: Path) -> None:
    folder = tmp_path / "saved"
    for rel, data in tiny_files().items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    (folder / "config.json").write_text(json.dumps({"_name_or_path": "org/tiny", "model_type": "bert"}))
    meta = folder / ".cache" / "huggingface" / "download"
    meta.mkdir(parents=True)
    (meta / "config.json.metadata").write_text(f'{C1}\n"etag"\n1700000000.0\n')
    first = import_dir(vault, folder)
    assert first.version.model == "org/tiny"
    assert vault.show("org/tiny").lineage[0] == {
        "kind": "upstream", "repo": "org/tiny", "commit": C1, "revision": None, "source": "folder",
    }  # fmt: skip
    assert not any(f.path.startswith(".cache") for f in vault.show("org/tiny").files)
    assert not import_dir(vault, folder).imported

    plain = tmp_path / "plain-model"  # no origin recorded anywhere: the content decides
    write_random(plain / "model.safetensors", 50_000)
    assert import_dir(vault, plain).imported and vault.show("plain-model").lineage == ()
    assert not import_dir(vault, plain).imported
    write_random(plain / "model.safetensors", 50_000, seed=9)
    assert import_dir(vault, plain).imported


def test_adapter_finds_its_base_through_the_import(vault: Vault, tmp_path: Path) -> None:
    repo_dir = tmp_path / "models--org--tiny"
    cache_snapshot(repo_dir, C1, tiny_files())
    base = import_dir(vault, repo_dir, name="tiny-base").version
    vault.push("lora", adapter(tmp_path / "a", "org/tiny", revision=C1))
    assert vault.show("lora").lineage[0]["commit"] == base.commit
    assert vault.show("lora").lineage[0]["model"] == "tiny-base"


def test_cli_import_dir(home: Path, tmp_path: Path) -> None:
    repo_dir = tmp_path / "models--org--tiny"
    cache_snapshot(repo_dir, C1, tiny_files())
    first = run_cli(home, "import", "dir", str(repo_dir), "--json")
    assert first.returncode == 0, first.stderr
    data = json.loads(first.stdout)
    assert data["imported"] is True and data["upstream"]["commit"] == C1
    second = run_cli(home, "import", "dir", str(repo_dir))
    assert second.returncode == 0 and "already imported as org/tiny@" in second.stderr
    bad = run_cli(home, "import", "dir", str(repo_dir), "--revision", "nope")
    assert bad.returncode == 4 and bad.stderr.strip().startswith("error:")
