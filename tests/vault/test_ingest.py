"""The façade's chunk upload protocol and ranged file streams (what the server is built on)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from weightvault.cas.hashing import chunk_id
from weightvault.core.errors import (
    DigestMismatchError,
    InvalidInputError,
    MissingObjectError,
    NotFoundError,
    RangeNotSatisfiableError,
    UnsafePathError,
)
from weightvault.core.manifest import FileRecipe
from weightvault.vault.ingest import UploadedFile
from weightvault.vault.vault import Vault


def _chunked(data: bytes, vault: Vault) -> tuple[FileRecipe, list[tuple[bytes, bytes]]]:
    pieces = [bytes(v) for v in vault.chunker.chunk_bytes(data)]
    blobs = [(chunk_id(p), p) for p in pieces]
    recipe = FileRecipe(hashlib.sha256(data).hexdigest(), len(data), tuple((c, len(p)) for c, p in blobs))
    return recipe, blobs


def test_upload_only_missing_chunks_then_commit_and_stream_ranges(vault: Vault, model_dir: Path) -> None:
    vault.push("m", model_dir, version="v1")
    old = (model_dir / "model-00001-of-00002.safetensors").read_bytes()
    new = old[:1_000_000] + b"changed" + old[1_000_000:]
    recipe, blobs = _chunked(new, vault)
    ids = [c for c, _ in blobs]
    missing = vault.missing_chunks("m", ids)
    assert 0 < len(missing) < len(ids)  # the unchanged chunks are already there
    with pytest.raises(MissingObjectError):
        vault.commit_upload("m", [UploadedFile("w.bin", recipe)], version="v2")
    result = vault.put_chunks("m", [(c, d) for c, d in blobs if c in set(missing)])
    assert result.stored == len(set(missing))
    assert vault.missing_chunks("m", ids) == []
    pushed = vault.commit_upload("m", [UploadedFile("w.bin", recipe)], version="v2", message="remote")
    assert pushed.version.label == "v2" and vault.show("m@v2").files[0].sha256 == recipe.sha256
    stream = vault.open_file("m@v2", "w.bin")
    assert b"".join(stream.iter_bytes()) == new
    assert b"".join(stream.iter_bytes(999_990, 1_000_020)) == new[999_990:1_000_020]
    assert b"".join(stream.iter_bytes(len(new) - 5)) == new[-5:]
    with pytest.raises(RangeNotSatisfiableError):
        list(stream.iter_bytes(len(new) + 1))
    with pytest.raises(NotFoundError):
        vault.open_file("m@v2", "nope.bin")
    with pytest.raises(UnsafePathError):
        vault.open_file("m@v2", "../w.bin")


def test_bad_uploads_change_nothing(vault: Vault) -> None:
    data = bytes(range(256)) * 5000
    recipe, blobs = _chunked(data, vault)
    before = vault.index.stats()
    wrong = [(blobs[0][0], blobs[0][1][:-1] + b"x")]
    with pytest.raises(DigestMismatchError):
        vault.put_chunks("m", wrong)
    assert vault.index.stats() == before
    with pytest.raises(InvalidInputError):
        vault.missing_chunks("m", [b"short"])
    vault.put_chunks("m", blobs)
    lying = FileRecipe("0" * 64, recipe.size, recipe.chunks)  # right chunks, wrong file digest
    with pytest.raises(DigestMismatchError):
        vault.commit_upload("m", [UploadedFile("f", lying)], version="v1")
    with pytest.raises(UnsafePathError):
        vault.commit_upload("m", [UploadedFile("../f", recipe)], version="v1")
    assert not vault.index.label_exists("m", "v1")
    assert [m.name for m in vault.list_models()] == []
