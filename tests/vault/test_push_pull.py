from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from weightvault.core import layout
from weightvault.core.errors import (
    AmbiguousRevisionError,
    ConflictError,
    CorruptObjectError,
    DestinationConflictError,
    InvalidNameError,
    MissingObjectError,
    ModelNotFoundError,
    RevisionNotFoundError,
    SourceNotFoundError,
    VersionExistsError,
)
from weightvault.vault.vault import Vault

from ..conftest import tree_bytes, write_random

# push, pull, cache and durability also run with the Linux-only paths off (as on macOS)
pytestmark = pytest.mark.os_paths


def test_push_then_pull_is_byte_identical(vault: Vault, model_dir: Path, tmp_path: Path) -> None:
    result = vault.push("org/llama", model_dir, version="v1.0.0", message="first", metadata={"team": "nlp"})
    assert result.version.label == "v1.0.0"
    assert result.bytes_read == sum(len(b) for b in tree_bytes(model_dir).values())
    info = vault.show("org/llama@v1.0.0")
    assert info.message == "first" and info.metadata == {"team": "nlp"}
    assert {f.path for f in info.files} == set(tree_bytes(model_dir))
    import hashlib

    for f in info.files:
        assert f.sha256 == hashlib.sha256((model_dir / f.path).read_bytes()).hexdigest()
    vault.pull("org/llama@v1.0.0", tmp_path / "out")
    assert tree_bytes(tmp_path / "out") == tree_bytes(model_dir)
    assert not list((tmp_path / "out").rglob("*.wv-tmp"))


def test_single_file_source(vault: Vault, tmp_path: Path) -> None:
    f = write_random(tmp_path / "weights.bin", 123_456)
    vault.push("single", f)
    vault.pull("single", tmp_path / "o")
    assert (tmp_path / "o" / "weights.bin").read_bytes() == f.read_bytes()


def test_timestamp_labels_are_distinct_within_one_second(vault: Vault, model_dir: Path) -> None:
    labels = []
    for i in range(3):  # new content each time: identical content would be "unchanged"
        (model_dir / "step.txt").write_text(str(i))
        labels.append(vault.push("m", model_dir).version.label)
    assert len(set(labels)) == 3
    now = datetime.now(UTC).strftime("%Y%m%d%H")
    assert all(label.startswith(now[:8]) and label[:14].isdigit() for label in labels)


def test_labels_are_unique_and_immutable(vault: Vault, model_dir: Path, tmp_path: Path) -> None:
    vault.push("m", model_dir, version="v1")
    write_random(model_dir / "extra.bin", 1000)
    with pytest.raises(VersionExistsError):
        vault.push("m", model_dir, version="v1")
    assert [v.label for v in vault.list_versions("m")] == ["v1"]
    assert "extra.bin" not in {f.path for f in vault.show("m@v1").files}


def test_revisions_latest_label_alias_commit_and_prefix(vault: Vault, model_dir: Path) -> None:
    v1 = vault.push("m", model_dir, version="v1").version
    (model_dir / "config.json").write_text('{"hidden_size": 65}')
    v2 = vault.push("m", model_dir, version="v2").version
    assert v2.parent == v1.commit
    assert vault.resolve("m").label == "v2"
    assert vault.resolve("m@v1").commit == v1.commit
    assert vault.resolve(f"m@{v1.commit}").label == "v1"
    assert vault.resolve(f"m@{v1.commit[:10]}").label == "v1"
    vault.set_alias("m", "production", "v1")
    assert vault.resolve("m@production").label == "v1"
    assert vault.show("m@v1").aliases == ("production",)
    vault.set_alias("m", "production", "v2")
    assert vault.resolve("m@production").label == "v2"
    vault.remove_alias("m", "production")
    with pytest.raises(RevisionNotFoundError):
        vault.resolve("m@production")
    with pytest.raises(ConflictError):
        vault.set_alias("m", "v1", "v2")  # an alias may not shadow a label
    with pytest.raises(RevisionNotFoundError):
        vault.resolve("m@nope")
    with pytest.raises(ModelNotFoundError):
        vault.resolve("other")


def test_ambiguous_commit_prefix(vault: Vault) -> None:
    now = datetime.now(UTC)
    vault.refresh()  # index rows added below by hand stay (no ref change is journaled)
    for label, commit in (("a", "abcd1" + "0" * 35), ("b", "abcd2" + "0" * 35)):
        vault.index.add_version(
            model="m",
            label=label,
            commit=commit,
            parent=None,
            created=now,
            message="",
            metadata={},
            total_size=0,
            file_count=0,
            manifest=b"{}",
        )
    with pytest.raises(AmbiguousRevisionError):
        vault.resolve("m@abcd")
    assert vault.resolve("m@abcd2").label == "b"


def test_list_models_and_versions_newest_first(vault: Vault, model_dir: Path) -> None:
    vault.push("b", model_dir, version="one")
    vault.push("a", model_dir, version="x")
    vault.push("b", model_dir, version="two")
    assert [m.name for m in vault.list_models()] == ["a", "b"]
    assert [v.label for v in vault.list_versions("b")] == ["two", "one"]


def test_include_exclude(vault: Vault, model_dir: Path, tmp_path: Path) -> None:
    vault.push("m", model_dir)
    vault.pull("m", tmp_path / "a", include=["*.safetensors"])
    assert sorted(tree_bytes(tmp_path / "a")) == [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ]
    vault.pull("m", tmp_path / "b", exclude=["*.safetensors", "tokenizer/*"])
    assert sorted(tree_bytes(tmp_path / "b")) == ["config.json"]
    vault.pull("m", tmp_path / "c", include=["tokenizer/*"])
    assert sorted(tree_bytes(tmp_path / "c")) == ["tokenizer/vocab.bin"]


def test_destination_conflicts(vault: Vault, model_dir: Path, tmp_path: Path) -> None:
    vault.push("m", model_dir)
    dest = tmp_path / "out"
    vault.pull("m", dest)
    vault.pull("m", dest)  # identical files: nothing to do, no error
    (dest / "config.json").chmod(0o644)
    os.unlink(dest / "config.json")
    (dest / "config.json").write_text("locally edited")
    with pytest.raises(DestinationConflictError):
        vault.pull("m", dest)
    assert (dest / "config.json").read_text() == "locally edited"
    vault.pull("m", dest, force=True)
    assert (dest / "config.json").read_text() == '{"hidden_size": 64}'
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    with pytest.raises(DestinationConflictError):
        vault.pull("m", a_file)
    assert a_file.read_text() == "x"


def test_bad_source_and_names_change_nothing(vault: Vault, tmp_path: Path, model_dir: Path) -> None:
    with pytest.raises(SourceNotFoundError):
        vault.push("m", tmp_path / "missing")
    with pytest.raises(InvalidNameError):
        vault.push("bad..name", model_dir)
    with pytest.raises(InvalidNameError):
        vault.push("m", model_dir, version="../x")
    assert vault.list_models() == []
    assert vault.stats()["packs"] == 0


def test_corrupt_pack_is_detected_on_pull_and_nothing_is_left(
    vault: Vault, model_dir: Path, tmp_path: Path
) -> None:
    vault.push("m", model_dir)
    # damage a chunk of the file pulled below (the two shards share one pack in no fixed order)
    entry = next(f for f in vault.show("m").files if f.path == "model-00001-of-00002.safetensors")
    first = vault._recipe(entry.sha256).chunks[0][0]
    loc = vault.index.locate_chunks([first])[first]
    path = Path(vault.settings.store_path) / layout.pack_key(loc.pack_id)
    data = bytearray(path.read_bytes())
    data[loc.offset + 100] ^= 0xFF
    path.write_bytes(bytes(data))
    dest = tmp_path / "out"
    with pytest.raises(CorruptObjectError) as exc:
        vault.pull("m", dest, include=["model-00001-of-00002.safetensors"])
    assert "model-00001-of-00002.safetensors" in str(exc.value) and loc.pack_id in str(exc.value)
    assert not (dest / "model-00001-of-00002.safetensors").exists()
    assert not [p for p in dest.rglob("*") if p.is_file()]
    assert not list(vault.cache.entries()) if vault.cache else True


def test_missing_pack_is_reported(vault: Vault, model_dir: Path, tmp_path: Path) -> None:
    vault.push("m", model_dir)
    for info in list(vault.backend.list(layout.PACKS)):
        vault.backend.delete(info.key)
    with pytest.raises(MissingObjectError, match=r"pack .* needed by"):
        vault.pull("m", tmp_path / "out")
    assert not (tmp_path / "out" / "model-00001-of-00002.safetensors").exists()


def test_delete_removes_label_and_aliases(vault: Vault, model_dir: Path) -> None:
    vault.push("m", model_dir, version="v1")
    vault.push("m", model_dir, version="v2")
    vault.set_alias("m", "prod", "v1")
    vault.delete("m@v1")
    assert [v.label for v in vault.list_versions("m")] == ["v2"]
    assert vault.model("m").aliases == {}
    assert not vault.backend.exists(layout.version_ref_key("m", "v1"))
    assert not vault.backend.exists(layout.alias_ref_key("m", "prod"))
    with pytest.raises(RevisionNotFoundError):
        vault.delete("m@v1")


def test_config_file_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model_dir: Path) -> None:
    home = tmp_path / "h"
    home.mkdir()
    (home / "config.yaml").write_text(
        "model_weights:\n  storage_type: local\n  cache_enabled: true\n"
        f"  cache_directory: {tmp_path / 'wcache'}\n  cache_max_size_gb: 0.5\n  checksum_algorithm: sha256\n"
    )
    v = Vault.open(home)
    assert v.cache is not None and v.cache.root == tmp_path / "wcache" and v.cache.max_bytes == 1 << 29
    v.close()
    monkeypatch.setenv("WEIGHTVAULT_CACHE_ENABLED", "false")
    v = Vault.open(home)
    assert v.cache is None
    v.close()
    monkeypatch.setenv("WEIGHTVAULT_HOME", str(home))
    monkeypatch.delenv("WEIGHTVAULT_CACHE_ENABLED")
    with Vault.open() as v:
        assert v.settings.home == home


def test_a_version_the_index_refuses_leaves_no_ref_in_the_store(
    vault: Vault, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ref is created before the index row; when the row fails, the ref is taken back and
    journalled, so the store holds no version the index never saw (a refresh finds none)."""

    def refuse(**_kwargs: object) -> None:
        raise RuntimeError("index refused the row")

    monkeypatch.setattr(vault.index, "add_version", refuse)
    with pytest.raises(RuntimeError, match="index refused"):
        vault.push("m", model_dir, version="v1")
    monkeypatch.undo()
    assert not vault.backend.exists(layout.version_ref_key("m", "v1"))
    vault.refresh()
    with pytest.raises(ModelNotFoundError):
        vault.list_versions("m")
    vault.push("m", model_dir, version="v1")  # the label is free again
    assert [v.label for v in vault.list_versions("m")] == ["v1"]
