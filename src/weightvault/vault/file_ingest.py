"""Versions built from whole files handed to the vault one at a time (the server's file upload).

The chunk upload (``vault.ingest``) lets a client chunk, name and send chunks itself. That cannot
serve an encrypted model (chunk ids, cut points and recipe names are keyed with secrets a client
must never hold) nor float-aware compression (it needs each file's tensor layout, so the
embedded push encodes chunks knowing which file and offset they come from). For such models a
client sends whole files instead, and the vault runs the embedded push pipeline on each of them
itself: keyed chunking, dedup within the model's domain, compression, sealing, recipe. So the
stored objects are those an embedded push of the same files writes (same chunk ids, codecs and
blob sizes; only the grouping of blobs into packs may differ).

``missing_files`` says which files the vault cannot rebuild for a model (ask first);
``ingest_file`` stores one complete, already verified file; ``commit`` makes a version of files
named by path and SHA-256. Every step is idempotent, and nothing is visible before the commit:
what an abandoned upload stored is unreferenced and collected by gc like any other.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from weightvault.cas.hashing import chunk_id
from weightvault.core import layout
from weightvault.core.errors import (
    ConcurrentModificationError,
    DigestMismatchError,
    InvalidInputError,
    MissingObjectError,
    NotUploadedError,
    VersionExistsError,
)
from weightvault.core.manifest import FileEntry, FileRecipe, Manifest
from weightvault.core.names import check_label, check_model_name, check_relative_path
from weightvault.core.types import PushResult
from weightvault.vault import safety as safety_module
from weightvault.vault.codecs import BlobEncoder
from weightvault.vault.keyring import Domain
from weightvault.vault.locks import SHARED, holding
from weightvault.vault.packer import PackSink, default_temp_factory
from weightvault.vault.push import PushPipeline
from weightvault.vault.source import SourceFile
from weightvault.vault.stream import FileStream

if TYPE_CHECKING:
    from weightvault.vault.versions import Versions

_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True, slots=True)
class AnnouncedFile:
    """A file of a version as a client names it: path, size and plain SHA-256."""

    path: str
    size: int
    sha256: str


def check_sha256(sha256: str) -> str:
    if len(sha256) != 64 or not set(sha256) <= _HEX:
        raise InvalidInputError("a file's SHA-256 is 64 lowercase hex digits")
    return sha256


def needs_files(vault: Versions, model: str, *, read_refs: bool = True) -> bool:
    """Whether pushes of ``model`` must send whole files: it is (or a push would make it)
    encrypted, or the vault compresses with float-aware codecs, which need each file's layout.
    ``read_refs`` also asks the store (an encrypted model whose keyring was deleted still has
    authenticated refs, ``Store.shows_encryption``): once per push, not on every chunk request."""
    check_model_name(model)
    if vault.settings.compression == "float" or vault.settings.encryption.enabled:
        return True
    if vault.keys.domain(model) is not None:
        return True
    return read_refs and vault.shows_encryption(model)


def prepare(vault: Versions, model: str) -> None:
    """Keys first, as an embedded push: the model's keyring is opened (or made, when encryption
    is on), so a key problem is reported before a client sends any file."""
    check_model_name(model)
    vault._push_domain(model)


def _held(vault: Versions, model: str, dom: Domain | None, sha256: str, size: int) -> FileRecipe | None:
    """The recipe of a file of ``model`` when the vault can rebuild it: its keyed recipe in an
    encrypted model (a plain one does not count there), every chunk indexed, not condemned by a
    gc, and (encrypted) sealed under a data key the keyring still holds."""
    try:
        recipe = vault._recipe(sha256, model, allow_plain=dom is None)
    except MissingObjectError:
        return None
    if recipe.size != size:
        return None
    ids = [c for c, _ in recipe.chunks]
    where = vault.index.locate_chunks(ids, include_condemned=False)
    if len(where) != len(set(ids)):
        return None
    if dom is not None and any(loc.key_slot not in dom.slots for loc in where.values()):
        return None
    return recipe


def missing_files(vault: Versions, model: str, files: Sequence[AnnouncedFile]) -> list[str]:
    """SHA-256s of the files among ``files`` that the vault lacks for ``model``, each once."""
    check_model_name(model)
    for f in files:
        check_sha256(f.sha256)
    dom = vault._push_domain(model)  # keys first, as an embedded push: a key problem stops here
    vault.refresh()  # files other machines pushed count too
    out: dict[str, None] = {}
    for f in files:
        if f.sha256 not in out and _held(vault, model, dom, f.sha256, f.size) is None:
            out[f.sha256] = None
    return list(out)


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino, a.st_size, a.st_mtime_ns, a.st_ctime_ns) == (
        b.st_dev,
        b.st_ino,
        b.st_size,
        b.st_mtime_ns,
        b.st_ctime_ns,
    )


def ingest_file(
    vault: Versions,
    model: str,
    path: str,
    spool: Path,
    sha256: str,
    size: int,
    *,
    verified: os.stat_result | None = None,
) -> FileRecipe:
    """Store one whole file (``spool``, already checked against ``sha256`` and ``size``) as an
    embedded push of it under ``path`` would: durable and indexed on return, not yet in a version.
    ``verified``: the spool's stat when ``sha256`` was computed over exactly the bytes it held;
    while the spool is still that file, untouched, the pipeline does not hash it again (the
    pipeline's own check that it did not change while being read still applies)."""
    check_model_name(model)
    check_relative_path(path)
    check_sha256(sha256)
    dom = vault._push_domain(model)
    st = os.stat(spool)
    if st.st_size != size:
        raise InvalidInputError(f"{path}: the upload has {st.st_size} bytes, not the {size} announced")
    src = SourceFile(path, spool, size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns, st.st_dev)
    known = {spool: sha256} if verified is not None and _same_file(st, verified) else None
    slot = dom.active_slot if dom is not None else 0
    with holding(
        vault.primary,
        SHARED,
        stale_seconds=vault.settings.lock_stale_seconds,
        wait_seconds=vault.settings.lock_wait_seconds,
    ):
        vault.refresh()
        if _held(vault, model, dom, sha256, size) is not None:
            return vault._recipe(sha256, model, allow_plain=dom is None)
        sink = PackSink(
            vault.backend,
            vault.index,
            default_temp_factory(vault.backend, vault.settings.home / "tmp"),
            vault.settings.pack_size,
            on_sealed=vault.journal_pack,
        )
        encoder: BlobEncoder | None = None
        if dom is not None or vault.settings.compression != "none":
            encoder = BlobEncoder(vault.settings.compression, dom.ciphers[slot] if dom else None, slot)
        workers = vault.settings.workers
        pipeline = PushPipeline(
            vault.index,
            sink,
            vault.chunker_for(dom),
            workers,
            None,
            encoder=encoder,
            chunk_id_fn=dom.chunk_id if dom is not None else chunk_id,
            usable_slots=dom.slots if dom is not None else None,
            # one file is more than a worker's share of this push: compression gets its own pool
            encode_threads=workers if vault.settings.compression != "none" and workers > 1 else 0,
        )
        try:
            (recipe,) = pipeline.run([src], verified=known)
        finally:
            vault.index.release_probes()
        if recipe.sha256 != sha256:  # the spool changed under us: what was stored is unreferenced
            raise DigestMismatchError(f"{path}: the upload does not hash to {sha256}")
        name = dom.recipe_name(sha256) if dom is not None else sha256
        body = dom.seal_recipe(name, recipe.to_bytes()) if dom is not None else recipe.to_bytes()
        vault.store.put_recipe_object(name, body)
        vault.index.put_recipes([(name, size, body)])
    held = vault.keys.record(model) if dom is not None else None
    if dom is not None and (held is None or slot not in {s.slot for s in held.slots}):
        raise ConcurrentModificationError(
            f"the data keys of {model} were rotated while {path} was stored; send it again"
        )
    return recipe


def commit(
    vault: Versions,
    model: str,
    files: Sequence[AnnouncedFile],
    *,
    version: str | None = None,
    message: str = "",
    metadata: dict[str, str] | None = None,
    lineage: Sequence[dict[str, Any]] = (),
    parent: str | None = None,
    refuse_unsafe: bool = False,
) -> PushResult:
    """Make a version of files the vault holds for ``model`` visible, as ``Vault.push`` does:
    same manifest (sealed for an encrypted model), same authenticated ref, same unchanged rule,
    the same safetensors validation and pickle scan (run on the files as the store holds them)."""
    started = time.perf_counter()
    check_model_name(model)
    if version is not None:
        check_label(version)
    if not files:
        raise InvalidInputError("a version needs at least one file")
    paths = [check_relative_path(f.path) for f in files]
    if len(set(paths)) != len(paths):
        raise InvalidInputError("a file path appears twice")
    for f in files:
        check_sha256(f.sha256)
        if f.size < 0:
            raise InvalidInputError(f"{f.path}: a size cannot be negative")
    had_domain = vault.keys.domain(model) is not None
    dom = vault._push_domain(model)
    with holding(
        vault.primary,
        SHARED,
        stale_seconds=vault.settings.lock_stale_seconds,
        wait_seconds=vault.settings.lock_wait_seconds,
    ):
        vault.refresh()
        if version is not None and vault.index.label_exists(model, version):
            raise VersionExistsError(f"version {model}@{version} already exists")
        recipes: dict[str, FileRecipe] = {}
        for f in files:
            recipe = _held(vault, model, dom, f.sha256, f.size)
            if recipe is None:
                raise NotUploadedError(
                    f"{f.path}: the vault does not hold this file (not uploaded, or collected by a gc "
                    "since): upload it, then commit"
                )
            recipes[f.sha256] = recipe
        packs = vault.index.pack_ids_for_chunks({c for r in recipes.values() for c, _ in r.chunks})
        lost = [p for p in packs if not vault.primary.exists(layout.pack_key(p))]
        if lost:  # the store lost them (a gc elsewhere): forget them; the client sends the files again
            vault.index.drop_packs(lost)
            raise NotUploadedError(f"{len(lost)} pack(s) of this version are gone from the store; send again")
        reader = vault._reader_for(model)
        streams = [
            FileStream(FileEntry(f.path, f.size, f.sha256), recipes[f.sha256], reader, f.path) for f in files
        ]
        safety = safety_module.inspect_streams(
            [(s.entry.path, s.entry.size, s.open) for s in streams],
            refuse_unsafe or vault.settings.refuse_unsafe_pickles,
        )
        if parent is None:
            with contextlib.suppress(Exception):
                parent = vault.index.resolve(model, None).commit
        # small files of a plain model carry their recipes inline (an index row of one may stand for
        # an inline recipe of an earlier push, with no object behind it)
        entries = tuple(FileEntry.of(f.path, recipes[f.sha256], plain=dom is None) for f in files)
        chunks_total = sum(len(recipes[f.sha256].chunks) for f in files)
        if version is None and parent is not None and (dom is None or had_domain):
            same = vault._same_files(model, parent, entries, lineage)
            if same is not None:
                return PushResult(
                    version=same,
                    bytes_read=0,
                    bytes_written=0,
                    chunks_total=chunks_total,
                    chunks_new=0,
                    seconds=time.perf_counter() - started,
                    unchanged=True,
                )
        # the recipes were written when the files arrived (or by an earlier push)
        names = {
            dom.recipe_name(f.sha256) if dom is not None else f.sha256 for f in entries if f.chunks is None
        }
        manifest = Manifest(
            model=model,
            files=entries,
            parent=parent,
            message=message,
            metadata=dict(metadata or {}),
            lineage=tuple(lineage),
            safety=safety,
        )
        commit_id, body = vault.store.put_manifest(manifest, dom)
        rec = vault._commit_version(
            model,
            version,
            commit_id,
            signer=vault._signer(dom),
            parent=parent,
            message=message,
            metadata=metadata,
            total_size=manifest.total_size,
            file_count=len(files),
            manifest=body,
            required_packs=packs,
            required_recipes=names,
        )
    replication = vault._replicate_version(rec)
    return PushResult(
        version=vault._info(rec),
        bytes_read=0,
        bytes_written=0,
        chunks_total=chunks_total,
        chunks_new=0,
        seconds=time.perf_counter() - started,
        replication=replication,
    )
