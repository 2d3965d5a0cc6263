"""A file whose SHA-256 was verified as it arrived is not hashed again by the push pipeline, and
only while it is still exactly the file that was verified."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from weightvault import Vault
from weightvault.core.errors import DigestMismatchError
from weightvault.vault import file_ingest, filescan

from .test_encryption import sentinel_model


def _encrypted_home(home: Path) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.yaml").write_text("encryption:\n  enabled: true\n")
    return home


def _no_second_hash(*_args: object, **_kwargs: object) -> str:
    raise AssertionError("the pipeline hashed a file whose SHA-256 was already verified")


def test_a_verified_spool_is_stored_as_a_push_stores_it_without_a_second_hash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = sentinel_model(tmp_path / "src", 9_500_000)  # above the pipeline's small-file size
    weights = src / "model.safetensors"
    spool = tmp_path / "spool"
    spool.write_bytes(weights.read_bytes())
    sha, size = hashlib.sha256(spool.read_bytes()).hexdigest(), spool.stat().st_size
    with Vault.open(_encrypted_home(tmp_path / "home")) as v:
        with monkeypatch.context() as m:
            m.setattr(filescan, "sha256_file", _no_second_hash)
            recipe = file_ingest.ingest_file(
                v, "org/m", "model.safetensors", spool, sha, size, verified=os.stat(spool)
            )
            with pytest.raises(AssertionError, match="already verified"):  # unverified: hashed
                file_ingest.ingest_file(v, "org/other", "model.safetensors", spool, sha, size)
        assert recipe.sha256 == sha
        only = tmp_path / "only"
        only.mkdir()
        (only / "model.safetensors").write_bytes(weights.read_bytes())
        pushed = v.push("org/m", only)  # an embedded push of the file finds every keyed chunk
        assert pushed.chunks_new == 0 and pushed.chunks_total == len(recipe.chunks) > 1


def test_a_spool_changed_after_its_check_is_hashed_again_and_refused(tmp_path: Path) -> None:
    data = os.urandom(9_000_000)
    spool = tmp_path / "spool"
    spool.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    checked = os.stat(spool)
    spool.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # same size, other bytes
    os.utime(spool, ns=(checked.st_atime_ns, checked.st_mtime_ns))  # even with the old mtime
    with Vault.open(_encrypted_home(tmp_path / "home")) as v:
        with pytest.raises(DigestMismatchError):
            file_ingest.ingest_file(v, "org/m", "w.bin", spool, sha, len(data), verified=checked)
        announced = [file_ingest.AnnouncedFile("w.bin", len(data), sha)]
        assert file_ingest.missing_files(v, "org/m", announced) == [sha]  # nothing kept under it
