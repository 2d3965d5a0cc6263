"""Id-key rotation: move one encrypted model to a new domain (``keys rotate MODEL --new-domain``).

Rotating the KEK or the data keys does not lock out someone who kept a model's id key: it keys
chunk ids, recipe names, commit ids and ref MACs, and seeds the chunker. A new domain replaces
all of it. Steps, each safe to interrupt (a rerun finds where it stopped):

1. **Begin**: a fresh id key and data key (next slot) are added to the keyring as its
   ``next_domain`` (a conditional keyring write, same KEK). Readers keep using the old domain.
2. **Move** (shared store lock, so no gc sweeps meanwhile): every version, oldest first, is
   read through the old domain, cut again with the new domain's keyed chunker, sealed under the
   new data key into new packs (deduplicated within the new domain), given new sealed recipes and
   a new sealed manifest (same files, message, metadata, lineage; its parent mapped to the
   parent's new commit id), whose keyed commit id is new. Its ref, and each alias ref, is then
   rewritten carrying its successor (``refauth.sign_transition``): readers of the old domain
   still read the old commit; the ref of the new domain is already MACed under the new key.
3. **Switch** (exclusive store lock: no push commits meanwhile): versions pushed during step 2
   are moved too, secondaries get the new objects, and the keyring becomes the new domain's
   alone (the old domain's keys leave it) and names the old id key in ``replaces``; this home's
   pin moves to the new id key, other homes' pins follow when they open it.
4. **Settle**: every ref is rewritten as a plain ref of the new domain and journalled, so every
   machine's index follows; the old manifests, recipes and packs are garbage for ``gc``.

A push that opened the old domain and commits after the switch fails (its data key is gone)
and is told to push again. Labels, timestamps, aliases and the version contents are unchanged;
commit ids change (they are keyed by the domain).
"""

from __future__ import annotations

import hashlib
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from weightvault.core import layout
from weightvault.core.errors import (
    ConcurrentModificationError,
    CorruptObjectError,
    InvalidInputError,
    ModelNotFoundError,
)
from weightvault.core.manifest import FileEntry, FileRecipe, Manifest
from weightvault.core.names import check_model_name
from weightvault.vault import refauth
from weightvault.vault import replication as replication_module
from weightvault.vault.codecs import BlobEncoder, layout_from_chunks
from weightvault.vault.keyring import Domain
from weightvault.vault.locks import EXCLUSIVE, SHARED, holding
from weightvault.vault.packer import PackSink, default_temp_factory
from weightvault.vault.rotation import _Joined
from weightvault.vault.source import SourceFile

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from weightvault.registry.index import VersionRecord
    from weightvault.vault.versions import Versions


@dataclass(slots=True)
class NewDomainReport:
    model: str
    id_key_from: str
    id_key_to: str = ""
    versions: int = 0
    aliases: int = 0
    files: int = 0
    #: moved by this run (a rerun skips what an earlier one finished)
    files_moved: int = 0
    chunks_written: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    packs_written: int = 0
    #: old commit id -> new commit id
    commits: dict[str, str] = field(default_factory=dict)
    replica_errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "id_key_from": self.id_key_from,
            "id_key_to": self.id_key_to,
            "versions": self.versions,
            "aliases": self.aliases,
            "files": self.files,
            "files_moved": self.files_moved,
            "chunks_written": self.chunks_written,
            "bytes_read": self.bytes_read,
            "bytes_written": self.bytes_written,
            "packs_written": self.packs_written,
            "commits": self.commits,
            "replica_errors": self.replica_errors,
            "seconds": self.seconds,
        }


#: chunks read ahead of the re-chunking (each up to the chunker's max size): bounded memory
_READ_AHEAD = 8


def _read_ahead(chunks: Iterator[bytes | memoryview]) -> Iterator[bytes]:
    """``chunks`` read (fetched, opened, verified) by a thread of their own, a few ahead of the
    consumer, so reading the old domain and sealing the new one use both cores."""
    out: queue.Queue[bytes | BaseException | None] = queue.Queue(_READ_AHEAD)
    stop = threading.Event()

    def put(item: bytes | BaseException | None) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for chunk in chunks:
                if not put(bytes(chunk)):
                    return
            put(None)
        except BaseException as exc:  # handed to the consumer, which raises it
            put(exc)

    thread = threading.Thread(target=produce, name="wv-new-domain-read", daemon=True)
    thread.start()
    try:
        while (item := out.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


def _versions(vault: Versions, model: str) -> list[VersionRecord]:
    try:
        return sorted(vault.index.list_versions(model), key=lambda r: (r.created, r.label))
    except ModelNotFoundError:
        return []


class _Mover:
    """Moves the versions and aliases of one model from ``old`` to ``old.pending``."""

    def __init__(
        self, vault: Versions, old: Domain, report: NewDomainReport, progress: Callable[[int], None]
    ):
        if old.pending is None:  # pragma: no cover - guarded by the caller
            raise ValueError("no pending domain")
        self.vault = vault
        self.old = old
        self.new: Domain = old.pending
        self.model = old.model
        self.report = report
        self.progress = progress
        self.slot = self.new.active_slot
        self.encoder = BlobEncoder(vault.settings.compression, self.new.ciphers[self.slot], self.slot)
        self.chunker = vault.chunker_for(self.new)
        self.reader = vault._reader_for(self.model)
        self.lock = threading.Lock()
        self.done: set[str] = set()  # file sha256s whose new recipe is durable in this run
        #: store keys of the new domain's objects (replicated before the switch)
        self.new_keys: dict[str, None] = {}

    # ---- one file ----------------------------------------------------------------------------

    def _new_recipe(self, sha256: str) -> FileRecipe | None:
        """The new domain's recipe of a file when it and all its chunks are already stored."""
        name = self.new.recipe_name(sha256)
        body = self.vault.index.get_recipe(name)
        if body is None:
            return None
        try:
            recipe = FileRecipe.from_bytes(self.new.open_recipe(name, body))
        except CorruptObjectError:
            return None
        ids = [cid for cid, _ in recipe.chunks]
        if len(self.vault.index.locate_chunks(ids)) != len(set(ids)):
            return None
        if not self.vault.primary.exists(layout.recipe_key(name)):
            return None
        return recipe

    def _layout_prefix(self, entry: FileEntry, ids: list[bytes], src: SourceFile) -> None:
        first = self.reader.chunks(ids[:4], f"{self.model}:{entry.path}")
        found = layout_from_chunks(entry.path, entry.size, first)
        if found is not None:
            self.encoder.set_layout(src, found)

    def file(self, entry: FileEntry, sink: PackSink) -> FileRecipe | None:
        """Re-chunk and re-seal one file into the new domain; None when it already is."""
        if self._new_recipe(entry.sha256) is not None:
            return None
        vault = self.vault
        _name, old_recipe = vault._find_recipe(entry.sha256, self.model, inline=entry.inline_recipe())
        ids = [cid for cid, _ in old_recipe.chunks]
        src = SourceFile(entry.path, Path(f"/new-domain/{entry.sha256}/{entry.path}"), entry.size, 0, 0)
        self._layout_prefix(entry, ids, src)
        digest = hashlib.sha256()
        chunks: list[tuple[bytes, int]] = []
        offset = written = 0
        what = f"{self.model}:{entry.path}"
        for raw in self.chunker.chunks(_Joined(_read_ahead(self.reader.chunks(ids, what)))):
            n = len(raw)
            digest.update(raw)
            cid = self.new.chunk_id(raw)
            chunks.append((cid, n))
            if vault.index.chunk_slot(cid) is None and sink.claim(cid):
                codec, stored, slot = self.encoder(raw, cid, offset, src)
                sink.add(cid, stored, n, codec, slot)
                written += 1
            offset += n
            self.progress(n)
        if digest.hexdigest() != entry.sha256:  # the old domain verified every chunk; this is the file
            raise CorruptObjectError(f"{what} does not rebuild to its SHA-256 while moving it")
        with self.lock:
            self.report.chunks_written += written
            self.report.bytes_read += entry.size
            self.report.files_moved += 1
        return FileRecipe(entry.sha256, entry.size, tuple(chunks))

    # ---- one version -------------------------------------------------------------------------

    def version(self, rec: VersionRecord) -> None:
        vault, store = self.vault, self.vault.store
        body = store.get_ref(self.model, "version", rec.label)  # checked under the old domain
        if body is None:
            return  # deleted meanwhile
        old_commit = str(body["commit"])
        manifest = vault._manifest(old_commit)
        todo: dict[str, FileEntry] = {}
        for f in manifest.files:
            if f.sha256 not in self.done:
                todo.setdefault(f.sha256, f)
        sink = PackSink(
            vault.primary,
            vault.index,
            default_temp_factory(vault.primary, vault.settings.home / "tmp"),
            vault.settings.pack_size,
            on_sealed=vault.journal_pack,
        )
        try:
            with ThreadPoolExecutor(vault.settings.workers, thread_name_prefix="wv-new-domain") as pool:
                recipes = [fut.result() for fut in [pool.submit(self.file, f, sink) for f in todo.values()]]
            sink.flush()  # recipes only once every chunk they name is durable and indexed
        except BaseException:
            sink.abort()
            raise
        finally:
            vault.index.release_probes()
        self.report.bytes_written += sink.bytes_written
        self.report.packs_written += len(sink.packs_written)
        for recipe in recipes:
            if recipe is None:
                continue
            name = self.new.recipe_name(recipe.sha256)
            sealed = self.new.seal_recipe(name, recipe.to_bytes())
            store.put_recipe_object(name, sealed)
            vault.index.put_recipe(name, recipe.size, sealed)
        self.done.update(todo)
        self.report.files = len(self.done)
        commits = self.report.commits
        moved = replace(
            manifest,
            parent=commits.get(manifest.parent, manifest.parent) if manifest.parent else None,
            lineage=tuple(self._edge(e) for e in manifest.lineage),
        )
        new_commit, _stored = store.put_manifest(moved, self.new)
        commits[old_commit] = new_commit
        self._remember(manifest, new_commit)
        current = refauth.in_next(body, self.new)
        if current is None or current["commit"] != new_commit:
            store.put_ref(
                self.model,
                "version",
                rec.label,
                refauth.sign_transition(self.old, self.new, "version", body, new_commit),
            )

    def _edge(self, edge: Any) -> dict[str, Any]:
        """A lineage edge naming a version of this model names its new commit id."""
        out = dict(edge)
        if out.get("model") == self.model and out.get("commit") in self.report.commits:
            out["commit"] = self.report.commits[out["commit"]]
        return out

    def _remember(self, manifest: Manifest, commit: str) -> None:
        """Store keys of a moved version's new objects, for the secondaries."""
        index = self.vault.index
        names = [self.new.recipe_name(sha) for sha in sorted({f.sha256 for f in manifest.files})]
        ids: set[bytes] = set()
        for name in names:
            body = index.get_recipe(name)
            if body is not None:
                ids.update(cid for cid, _ in FileRecipe.from_bytes(self.new.open_recipe(name, body)).chunks)
        packs = sorted(index.pack_ids_for_chunks(ids))
        for key in [layout.pack_key(p) for p in packs] + [layout.index_key(p) for p in packs]:
            self.new_keys[key] = None
        for name in names:
            self.new_keys[layout.recipe_key(name)] = None
        self.new_keys[layout.manifest_key(commit)] = None

    def aliases(self) -> None:
        store = self.vault.store
        try:
            aliases = self.vault.index.aliases(self.model)
        except ModelNotFoundError:
            aliases = {}
        for alias in sorted(aliases):
            body = store.get_ref(self.model, "alias", alias)
            if body is None:
                continue
            new_commit = self.report.commits.get(str(body["commit"]))
            if new_commit is None:
                raise ConcurrentModificationError(
                    f"alias {self.model}@{alias} names a version that was not moved; run the rotation again"
                )
            current = refauth.in_next(body, self.new)
            if current is None or current["commit"] != new_commit:
                store.put_ref(
                    self.model,
                    "alias",
                    alias,
                    refauth.sign_transition(self.old, self.new, "alias", body, new_commit),
                )
        self.report.aliases = len(aliases)

    def run(self) -> None:
        versions = _versions(self.vault, self.model)
        for rec in versions:
            self.version(rec)
        self.report.versions = len(versions)
        self.aliases()


# ---------------------------------------------------------------- the steps


def _lock(vault: Versions, kind: str) -> Any:
    return holding(
        vault.primary,
        kind,
        stale_seconds=vault.settings.lock_stale_seconds,
        wait_seconds=vault.settings.lock_wait_seconds,
    )


def _begin(vault: Versions, model: str) -> Domain:
    """The model's domain with its pending successor (made now unless an earlier run did)."""
    for attempt in range(3):
        dom = vault.keys.domain(model, refresh=True)
        if dom is None:
            raise InvalidInputError(
                f"model {model!r} is not encrypted: it has no keys to replace "
                f"(`weightvault keys rotate {model} --reencrypt` encrypts it)"
            )
        if dom.pending is not None:
            return dom
        try:
            return vault.keys.begin_domain(dom)
        except ConcurrentModificationError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def _unsettled(vault: Versions, dom: Domain) -> list[tuple[str, str, dict[str, Any]]]:
    """Refs of the model that still carry their successor in ``dom`` (a switch not settled)."""
    out = []
    for (model, kind, name), _key in sorted(vault.store.ref_keys()[0].items()):
        if model != dom.model:
            continue
        raw = vault.store.get_raw_ref(model, kind, name)
        if raw is not None and "next" in raw:
            moved = refauth.check(dom, model, kind, name, raw)
            if moved is not None:
                out.append((kind, name, moved))
    return out


def _announce(vault: Versions, model: str) -> None:
    """Journal every ref of ``model`` right after the switch: other machines' indexes re-read
    them (now in the new domain) at their next refresh, before the refs are even rewritten."""
    refs = [(kind, name) for (m, kind, name) in vault.store.ref_keys()[0] if m == model]
    for kind, name in sorted(refs, key=lambda r: (r[0] != "version", r[1])):
        vault.journal_ref(model, kind, name)


def _settle(vault: Versions, dom: Domain, report: NewDomainReport) -> None:
    """Rewrite every ref in transition as a plain ref of ``dom`` (versions first) and journal it."""
    refs = sorted(_unsettled(vault, dom), key=lambda r: (r[0] != "version", r[1]))
    for kind, name, body in refs:
        vault.store.put_ref(dom.model, kind, name, body)
    for kind, name, _body in refs:
        vault.journal_ref(dom.model, kind, name)
    if vault.replicas is not None and vault.settings.sync_enabled and refs:
        keys = [layout.ref_key(dom.model, kind, name) for kind, name, _ in refs]
        status = replication_module.replicate(vault, vault.replicas, keys)
        report.replica_errors += [f"{n}: {s}" for n, s in status.items() if s != "ok"]
    vault.refresh()


def rotate_domain(
    vault: Versions, model: str, progress: Callable[[int], None] | None = None
) -> NewDomainReport:
    """Move ``model`` to a new domain (see the module's docstring); rerun to finish an
    interrupted one."""
    started = time.perf_counter()
    check_model_name(model)
    vault.refresh()
    tick = progress or (lambda n: None)
    current = vault.keys.domain(model, refresh=True)
    if current is not None and current.pending is None and _unsettled(vault, current):
        # an earlier run switched the keyring and stopped before rewriting every ref
        report = NewDomainReport(model, current.record.replaces[-1] if current.record.replaces else "")
        report.id_key_to = current.id_key_id
        _settle(vault, current, report)
        report.seconds = time.perf_counter() - started
        return report
    dom = _begin(vault, model)
    pending = dom.pending
    assert pending is not None  # _begin made or found it
    report = NewDomainReport(model, dom.id_key_id)
    with _lock(vault, SHARED):  # no gc sweeps the new domain's objects before refs name them
        vault.refresh()
        _Mover(vault, dom, report, tick).run()
    with _lock(vault, EXCLUSIVE):  # no push commits between the last pass and the switch
        vault.refresh()
        fresh = vault.keys.domain(model, refresh=True)
        if fresh is None or fresh.pending is None or fresh.pending.id_key_id != pending.id_key_id:
            raise ConcurrentModificationError(
                f"the keyring of {model} changed during the rotation; run it again"
            )
        dom = fresh
        mover = _Mover(vault, dom, report, tick)
        mover.run()  # versions and aliases made meanwhile; what is done is skipped
        if vault.replicas is not None and vault.settings.sync_enabled:
            status = replication_module.replicate(vault, vault.replicas, list(mover.new_keys))
            report.replica_errors += [f"{n}: {s}" for n, s in status.items() if s != "ok"]
        new, status = vault.keys.switch_domain(dom)
        report.replica_errors += [f"{n}: keyring: {s}" for n, s in status.items() if s != "ok"]
        _announce(vault, model)
    report.id_key_to = new.id_key_id
    _settle(vault, new, report)
    report.seconds = time.perf_counter() - started
    return report


__all__ = ["NewDomainReport", "rotate_domain"]
