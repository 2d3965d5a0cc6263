"""Versions built from chunks that arrive one request at a time (the server's upload protocol).

A remote client chunks and hashes its files itself, asks which chunks the vault lacks, sends
only those, then commits the version by its files' recipes. Each uploaded chunk is checked
against its id before it is written; each file new to the vault is re-read from the store and
checked against its SHA-256 at commit. Every step is idempotent, so an interrupted upload is
resumed by asking again; nothing becomes visible before the commit.

Encrypted models are not accepted this way: their chunk ids are keyed hashes the client cannot
compute without the model's keys, so it could neither ask for nor name its chunks.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from weightvault.cas.hashing import CHUNK_ID_SIZE, chunk_id
from weightvault.core import layout
from weightvault.core.errors import (
    ConfigError,
    DigestMismatchError,
    InvalidInputError,
    MissingObjectError,
    PayloadTooLargeError,
    VersionExistsError,
)
from weightvault.core.manifest import FileEntry, FileRecipe, Manifest
from weightvault.core.names import check_label, check_model_name, check_relative_path
from weightvault.core.types import PushResult
from weightvault.vault import safety as safety_module
from weightvault.vault.codecs import BlobEncoder
from weightvault.vault.locks import SHARED, holding
from weightvault.vault.packer import PackSink, default_temp_factory
from weightvault.vault.source import SourceFile
from weightvault.vault.stream import FileStream

if TYPE_CHECKING:
    from weightvault.vault.versions import Versions


@dataclass(frozen=True, slots=True)
class UploadedFile:
    """One file of a version to commit: its path and the recipe the client computed."""

    path: str
    recipe: FileRecipe


@dataclass(slots=True)
class ChunkBatchResult:
    received: int = 0
    stored: int = 0
    bytes_stored: int = 0
    already_present: list[bytes] = field(default_factory=list)


_NO_SOURCE = SourceFile("upload", Path("upload"), 0, 0, 0)


def check_plain(vault: Versions, model: str) -> None:
    """Refuse models whose chunks the client cannot name (see module docstring)."""
    check_model_name(model)
    if vault.keys.domain(model) is not None or vault.settings.encryption.enabled:
        raise ConfigError(
            f"{model} is (or would be) encrypted: encrypted models are pushed with an embedded vault, "
            "not through the server's chunk upload"
        )


def missing_chunks(vault: Versions, model: str, ids: Sequence[bytes]) -> list[bytes]:
    """The ids among ``ids`` whose chunks the vault does not hold, in the order given."""
    check_plain(vault, model)
    for cid in ids:
        if len(cid) != CHUNK_ID_SIZE:
            raise InvalidInputError("a chunk id is 32 bytes (64 hex digits)")
    vault.refresh()  # chunks other machines pushed count too
    have = vault.index.locate_chunks(list(ids), include_condemned=False)
    return [cid for cid in dict.fromkeys(ids) if cid not in have]


def put_chunks(
    vault: Versions, model: str, chunks: Iterable[tuple[bytes, bytes | memoryview]], max_chunk: int
) -> ChunkBatchResult:
    """Store the chunks of one upload request as one pack: durable and indexed on return, or
    nothing at all when any chunk is bad or the stream breaks."""
    check_plain(vault, model)
    result = ChunkBatchResult()
    sink = PackSink(
        vault.backend,
        vault.index,
        default_temp_factory(vault.backend, vault.settings.home / "tmp"),
        1 << 62,  # one pack per request: it is sealed by flush() below, never mid-stream
        on_sealed=vault.journal_pack,  # announced to every other machine on the store
    )
    # uploaded chunks come without their file's tensor layout, so "float" stores them with plain zstd
    encoder = BlobEncoder("zstd") if vault.settings.compression != "none" else None
    try:
        for cid, data in chunks:
            result.received += 1
            if len(data) > max_chunk:
                raise PayloadTooLargeError(f"a chunk is at most {max_chunk} bytes")
            if len(data) == 0:
                raise InvalidInputError("empty chunk")
            if chunk_id(data) != cid:
                raise DigestMismatchError(f"chunk {cid.hex()} does not hash to its id")
            if vault.index.locate_chunks([cid]) or not sink.claim(cid):
                result.already_present.append(cid)
                continue
            view = memoryview(data)
            if encoder is not None:
                codec, stored, slot = encoder(view, cid, 0, _NO_SOURCE)
            else:
                codec, stored, slot = 0, view, 0
            sink.add(cid, stored, len(view), codec, slot)
            result.stored += 1
        sink.flush()
    except BaseException:
        sink.abort()
        raise
    result.bytes_stored = sink.bytes_written
    return result


def _check_file(vault: Versions, f: UploadedFile) -> None:
    """Read a file new to the vault back from its chunks and compare its SHA-256."""
    h = hashlib.sha256()
    for raw in vault.reader.chunks([c for c, _ in f.recipe.chunks], f.path):
        h.update(raw)
    if h.hexdigest() != f.recipe.sha256:
        raise DigestMismatchError(f"{f.path}: its chunks do not hash to the SHA-256 it was sent with")


def commit(
    vault: Versions,
    model: str,
    files: Sequence[UploadedFile],
    *,
    version: str | None = None,
    message: str = "",
    metadata: dict[str, str] | None = None,
    lineage: Sequence[dict[str, Any]] = (),
    parent: str | None = None,
    refuse_unsafe: bool = False,
) -> PushResult:
    """Make a version of uploaded files visible, as ``Vault.push`` does for a local folder: with
    the same safetensors validation and pickle scan, run on the files as the store holds them."""
    started = time.perf_counter()
    check_plain(vault, model)
    if version is not None:
        check_label(version)
        if vault.index.label_exists(model, version):
            raise VersionExistsError(f"version {model}@{version} already exists")
    if not files:
        raise InvalidInputError("a version needs at least one file")
    paths = [check_relative_path(f.path) for f in files]
    if len(set(paths)) != len(paths):
        raise InvalidInputError("a file path appears twice")
    # the shared lock keeps a gc from deleting what this version needs until it is committed
    # (docs/format.md, "Locks and online gc"); a pack lost before we took it is sent again
    with holding(
        vault.primary,
        SHARED,
        stale_seconds=vault.settings.lock_stale_seconds,
        wait_seconds=vault.settings.lock_wait_seconds,
    ):
        vault.refresh()
        if version is not None and vault.index.label_exists(model, version):
            raise VersionExistsError(f"version {model}@{version} already exists")
        all_ids = list(dict.fromkeys(c for f in files for c, _ in f.recipe.chunks))
        where = vault.index.locate_chunks(all_ids)
        absent = [c for c in all_ids if c not in where]
        if absent:
            raise MissingObjectError(
                f"{len(absent)} chunk(s) of this version were not uploaded (first {absent[0].hex()})"
            )
        packs = {loc.pack_id for loc in where.values()}
        lost = [p for p in packs if not vault.primary.exists(layout.pack_key(p))]
        if lost:  # the store lost them (a gc elsewhere): forget them; the client sends their chunks again
            vault.index.drop_packs(lost)
            raise MissingObjectError(
                f"{len(lost)} pack(s) of this version are gone from the store; send again"
            )
        for f in files:
            # a file is taken unchecked only with the very recipe the index holds for it (the row
            # of an inline recipe has no object that would keep a client's other recipe out)
            if vault.index.get_recipe(f.recipe.sha256) != f.recipe.to_bytes():
                _check_file(vault, f)
        streams = [
            FileStream(FileEntry(f.path, f.recipe.size, f.recipe.sha256), f.recipe, vault.reader, f.path)
            for f in files
        ]
        safety = safety_module.inspect_streams(
            [(s.entry.path, s.entry.size, s.open) for s in streams],
            refuse_unsafe or vault.settings.refuse_unsafe_pickles,
        )
        if parent is None:
            with contextlib.suppress(Exception):
                parent = vault.index.resolve(model, None).commit
        # small files carry their recipes inline, as a push writes them (a plain model)
        entries = tuple(FileEntry.of(f.path, f.recipe, plain=True) for f in files)
        if version is None and parent is not None:  # the embedded push's rule: same files, same lineage
            same = vault._same_files(model, parent, entries, lineage)
            if same is not None:
                return PushResult(
                    version=same,
                    bytes_read=0,
                    bytes_written=0,
                    chunks_total=sum(len(f.recipe.chunks) for f in files),
                    chunks_new=0,
                    seconds=time.perf_counter() - started,
                    unchanged=True,
                )
        for f, entry in zip(files, entries, strict=True):
            body = vault.store.put_recipe(f.recipe) if entry.chunks is None else f.recipe.to_bytes()
            vault.index.put_recipe(f.recipe.sha256, f.recipe.size, body)
        manifest = Manifest(
            model=model,
            files=entries,
            parent=parent,
            message=message,
            metadata=dict(metadata or {}),
            lineage=tuple(lineage),
            safety=safety,
        )
        commit_id, body = vault.store.put_manifest(manifest)
        rec = vault._commit_version(
            model,
            version,
            commit_id,
            signer=None,
            parent=parent,
            message=message,
            metadata=metadata,
            total_size=manifest.total_size,
            file_count=len(files),
            manifest=body,
            required_packs=packs,
            required_recipes={e.sha256 for e in entries if e.chunks is None},
        )
    replication = vault._replicate_version(rec)
    return PushResult(
        version=vault._info(rec),
        bytes_read=0,
        bytes_written=0,
        chunks_total=sum(len(f.recipe.chunks) for f in files),
        chunks_new=0,
        seconds=time.perf_counter() - started,
        replication=replication,
    )


class _Counted:
    """A read() view of byte pieces that hashes and counts what passes through."""

    def __init__(self, pieces: Iterable[bytes]) -> None:
        self._it = iter(pieces)
        self._buf = b""
        self.sha256 = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self._buf) < n:
            piece = next(self._it, None)
            if piece is None:
                break
            self._buf += piece
        out, self._buf = (self._buf, b"") if n < 0 else (self._buf[:n], self._buf[n:])
        self.sha256.update(out)
        self.size += len(out)
        return out

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)


def put_file(vault: Versions, model: str, pieces: Iterable[bytes], sha256: str, size: int) -> FileRecipe:
    """Store one whole file that arrives as a byte stream (a Hub LFS upload): chunked here, its
    size and SHA-256 checked before anything is kept, its chunks stored as one pack and its recipe
    recorded, so a later commit can name the file by its SHA-256."""
    check_plain(vault, model)
    if vault.settings.compression == "float":  # chunked here without the path, so without a layout
        raise ConfigError(
            f"this vault compresses with float-aware codecs: {model} takes whole files (vault.file_ingest)"
        )
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise InvalidInputError("a file's SHA-256 is 64 lowercase hex digits")
    if size < 0:
        raise InvalidInputError("a file's size cannot be negative")
    source = _Counted(pieces)
    recipe_chunks: list[tuple[bytes, int]] = []

    def chunks() -> Iterator[tuple[bytes, bytes]]:
        for view in vault.chunker.chunks(source):  # type: ignore[arg-type]
            data = bytes(view)
            cid = chunk_id(data)
            recipe_chunks.append((cid, len(data)))
            yield cid, data
            if source.size > size:
                raise PayloadTooLargeError(f"the upload is larger than the {size} bytes announced")
        if source.size != size:
            raise InvalidInputError(f"the upload has {source.size} bytes, not the {size} announced")
        if source.sha256.hexdigest() != sha256:
            raise DigestMismatchError(f"the upload does not hash to {sha256}")

    if size > 0:
        put_chunks(vault, model, chunks(), vault.chunker.params.max_size)
    elif sha256 != hashlib.sha256(b"").hexdigest() or source.read():
        raise DigestMismatchError(f"the upload does not hash to {sha256}")
    recipe = FileRecipe(sha256, size, tuple(recipe_chunks))
    body = vault.store.put_recipe(recipe)
    vault.index.put_recipe(sha256, size, body)
    return recipe


def file_present(vault: Versions, sha256: str) -> bool:
    """Whether a plain file's recipe and every chunk of it are in the vault and not condemned by
    a gc (an upload that waited past the gc grace period has to be sent again)."""
    body = vault.index.get_recipe(sha256)
    if body is None:
        return False
    ids = [c for c, _ in FileRecipe.from_bytes(body).chunks]
    return len(vault.index.locate_chunks(ids, include_condemned=False)) == len(set(ids))
