"""Pushes without surprises: identical content makes no new version, an empty source is refused,
VCS and cache folders stay out of a model unless asked for."""

from __future__ import annotations

from pathlib import Path

import pytest

from weightvault.core.errors import InvalidInputError
from weightvault.vault.source import ignored
from weightvault.vault.vault import Vault

from ..conftest import write_random


def test_identical_content_is_unchanged(vault: Vault, model_dir: Path) -> None:
    first = vault.push("m", model_dir)
    again = vault.push("m", model_dir, message="same files")
    assert again.unchanged and again.version.label == first.version.label
    assert again.version.commit == first.version.commit and again.bytes_written == 0
    assert [v.label for v in vault.list_versions("m")] == [first.version.label]


def test_explicit_version_labels_identical_content(vault: Vault, model_dir: Path) -> None:
    first = vault.push("m", model_dir)
    labelled = vault.push("m", model_dir, version="v1.0.0")
    assert not labelled.unchanged and labelled.version.label == "v1.0.0"
    assert {v.label for v in vault.list_versions("m")} == {first.version.label, "v1.0.0"}


def test_changed_content_after_an_identical_push_is_new(vault: Vault, model_dir: Path) -> None:
    vault.push("m", model_dir, version="v1")
    write_random(model_dir / "extra.bin", 1000, seed=9)
    assert not vault.push("m", model_dir).unchanged
    (model_dir / "extra.bin").unlink()  # back to v1's files, but v1 is no longer the latest
    assert not vault.push("m", model_dir).unchanged
    assert len(vault.list_versions("m")) == 3


def test_empty_source_needs_allow_empty(vault: Vault, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    (empty / ".git").mkdir(parents=True)
    (empty / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    with pytest.raises(InvalidInputError, match="allow-empty"):
        vault.push("m", empty)
    assert vault.index.list_model_names() == []
    result = vault.push("m", empty, allow_empty=True)
    assert result.version.file_count == 0


def test_vcs_and_cache_folders_are_ignored_by_default(vault: Vault, model_dir: Path, tmp_path: Path) -> None:
    (model_dir / ".git" / "objects").mkdir(parents=True)
    (model_dir / ".git" / "objects" / "ab").write_bytes(b"git object")
    (model_dir / "sub" / "__pycache__").mkdir(parents=True)
    (model_dir / "sub" / "__pycache__" / "x.pyc").write_bytes(b"pyc")
    (model_dir / ".cache" / "huggingface" / "download").mkdir(parents=True)
    (model_dir / ".cache" / "huggingface" / "download" / "x.metadata").write_text("meta")
    (model_dir / ".gitattributes").write_text("*.safetensors filter=lfs\n")  # kept, as the Hub keeps it
    paths = {f.path for f in vault.show(f"m@{vault.push('m', model_dir).version.label}").files}
    assert ".gitattributes" in paths
    assert not any(ignored(p) for p in paths) and not any(".git/" in p or "pycache" in p for p in paths)
    everything = vault.push("m", model_dir, version="all", default_ignores=False)
    paths = {f.path for f in vault.show(f"m@{everything.version.label}").files}
    assert {".git/objects/ab", "sub/__pycache__/x.pyc", ".cache/huggingface/download/x.metadata"} <= paths


def test_ignore_rules() -> None:
    assert ignored(".git/HEAD") and ignored("a/b/.hg/x") and ignored("x/.cache/huggingface/y")
    assert ignored(".svn") and ignored("pkg/__pycache__/m.pyc") and ignored(".ipynb_checkpoints/a")
    assert not ignored(".gitattributes") and not ignored(".cache/other/x") and not ignored("git/x")
