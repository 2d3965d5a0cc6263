"""Online garbage collection: mark from the store's refs, repack sparse packs, sweep under a lock.

Safe with any number of writers on any machines (docs/format.md, "Locks and online gc"):

1. Take the ``gc`` lock (one gc at a time) and refresh the index from the journal.
2. **Mark** from every version and alias ref listed in the store (never from the index alone):
   live commits, their recipes and chunks. An object that cannot be parsed stops gc (unless
   forced): a malformed ref may be a version someone needs.
3. **Repack**, online: the live chunks of packs whose live fraction is below
   ``gc_repack_threshold`` are copied as they are stored (no decryption) into new packs, which
   are journaled like a push's packs. Pushes go on meanwhile.
4. Take the ``exclusive`` lock: it waits for every running push (``shared`` lock) to commit, and
   no push starts while it is held. Refresh and **mark again**, then delete what is still dead
   and older than the grace period: packs whose every live chunk has a copy in a pack that
   stays, manifests and recipes no live version reads, and objects no journal entry ever named.
   A ``gone`` journal entry names them first, so every reader forgets them. Index rows of
   recipes without an object that nothing live reads (collected inline files) go with them.
5. Secondaries lose the same objects, and whatever exists only on them and is dead.
6. Temp files older than the grace period and than ``lock_stale_seconds`` go.
"""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from weightvault.cas.hashing import chunk_id as plain_chunk_id
from weightvault.cas.pack import ENTRY, FOOTER
from weightvault.core import layout
from weightvault.core.errors import (
    ConfigError,
    CredentialsError,
    FormatError,
    IntegrityError,
    MissingObjectError,
    StorageError,
)
from weightvault.core.manifest import FileRecipe
from weightvault.core.types import GcReport
from weightvault.storage.backend import Backend
from weightvault.vault import refresh as refresh_module
from weightvault.vault.codecs import BlobCodec
from weightvault.vault.journal import GONE
from weightvault.vault.locks import EXCLUSIVE, GC, holding
from weightvault.vault.packer import PackSink, default_temp_factory

if TYPE_CHECKING:
    from weightvault.vault.records import Records


class UnparseableObjectsError(FormatError):
    """gc will not delete while objects it cannot read might be versions someone needs."""

    code = "unparseable_objects"


@dataclass
class Marked:
    commits: set[str] = field(default_factory=set)
    recipes: set[str] = field(default_factory=set)
    chunks: set[bytes] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)


@dataclass
class Plan:
    dead: dict[str, int] = field(default_factory=dict)  # pack id -> size: nothing live, or all copied
    sparse: dict[str, list[tuple[bytes, int, int, int, int, int]]] = field(default_factory=dict)
    orphans: dict[str, int] = field(default_factory=dict)  # packs no journal entry named
    manifests: list[str] = field(default_factory=list)
    recipes: list[str] = field(default_factory=list)
    #: index rows of recipes without an object that no live version names (collected inline files)
    rows: list[str] = field(default_factory=list)
    live_bytes_to_copy: int = 0


def mark(vault: Records) -> Marked:
    """Live commits, recipes and chunks, from every ref the store holds right now."""
    out = Marked()
    found, bad = vault.store.ref_keys()
    out.problems.extend(f"{key}: not a ref key of this store format" for key in bad)
    known = vault.index.all_refs()
    models: dict[str, str] = {}
    for (model, kind, name), key in found.items():
        commit = known.get((model, kind, name)) if kind == "version" else None
        if commit is None:
            try:
                body = vault.store.get_ref(model, kind, name)
            except FormatError as exc:
                out.problems.append(f"{key}: {exc}")
                continue
            if body is None:
                continue  # deleted since the listing
            commit = body["commit"]
        out.commits.add(commit)
        models[commit] = model
    wanted: dict[tuple[str, str], FileRecipe | None] = {}
    for commit in out.commits:
        try:
            manifest = vault._manifest(commit)
        except (MissingObjectError, IntegrityError) as exc:
            out.problems.append(f"manifest {commit} of {models[commit]}: {exc}")
            continue
        for f in manifest.files:
            inline = f.inline_recipe()
            if inline is not None and (held := wanted.get((manifest.model, f.sha256))) is not None:
                # the same file inline in two manifests: whatever either names stays live
                out.chunks.update(cid for cid, _ in held.chunks)
            if inline is not None or (manifest.model, f.sha256) not in wanted:
                wanted[(manifest.model, f.sha256)] = inline
    # a live plain recipe's name (its file's SHA-256) -> the bodies marked for it, and whether one
    # of them is inline (else, with no index row, the one marked was read from the object)
    plain: dict[str, set[bytes]] = {}
    inlined: set[str] = set()
    for (model, sha), inline in sorted(wanted.items(), key=lambda x: x[0]):
        try:
            name, recipe = vault._find_recipe(sha, model, inline=inline)
        except (MissingObjectError, IntegrityError, CredentialsError, ConfigError) as exc:
            out.problems.append(f"recipe of file {sha} of {model}: {exc}")
            continue
        out.chunks.update(cid for cid, _ in recipe.chunks)
        out.recipes.add(name)
        if name == sha:
            plain.setdefault(sha, set()).add(recipe.to_bytes())
            if inline is not None:
                inlined.add(sha)
    _mark_other_plain_recipes(vault, plain, inlined, out)
    return out


def _mark_other_plain_recipes(
    vault: Records, plain: dict[str, set[bytes]], inlined: set[str], out: Marked
) -> None:
    """Keep the chunks of every recipe a reader may take for a live plain file, not only the one
    marked: this index's row (readers that look a file up by SHA-256 alone use it) and the store's
    ``recipes/<sha256>`` object (what every other machine, and a recover, reads), when either
    lists other chunks (a client's upload cut otherwise, an older writer's object). The name is
    live, so the object stays: its chunks must stay with it."""
    rows = vault.index.get_recipes(sorted(plain))
    listed = {layout.name_from_key(i.key) for i in vault.primary.list(layout.RECIPES)}
    # without a row or an inline recipe, the recipe marked was read from the object itself
    to_read = [sha for sha in sorted(plain) if sha in listed and (sha in rows or sha in inlined)]

    def read(sha: str) -> bytes | None:
        try:
            return vault.store.get_recipe_object(sha)
        except MissingObjectError:
            return None  # deleted since the listing

    with ThreadPoolExecutor(refresh_module.SCAN_THREADS, thread_name_prefix="wv-gc") as pool:
        stored = dict(zip(to_read, pool.map(read, to_read), strict=True))
    for sha in sorted(plain):
        others: dict[bytes, str] = {}
        row = rows.get(sha)
        if row is not None and row not in plain[sha]:
            others[row] = f"the index row of recipe {sha}"
        body = stored.get(sha)
        if body is not None and body not in plain[sha]:
            others[body] = layout.recipe_key(sha)
        for body, what in others.items():
            try:
                out.chunks.update(cid for cid, _ in FileRecipe.named(body, sha).chunks)
            except FormatError as exc:
                out.problems.append(f"{what}: {exc}")


def learn_unknown_packs(vault: Records) -> list[str]:
    """Record every pack in the store that the index does not know (a push killed before its
    journal entry), so that planning sees its chunks; a pack whose table cannot be read is a
    problem (gc will not delete what it cannot parse)."""
    known = {p.id for p in vault.index.packs()}
    problems = []
    for info in list(vault.primary.list(layout.PACKS)):
        pid = layout.name_from_key(info.key)
        if pid in known:
            continue
        try:
            size, entries = refresh_module.read_table(vault.primary, pid, info.size)
        except MissingObjectError:
            continue
        except IntegrityError as exc:
            problems.append(f"{info.key}: {exc}")
            continue
        vault.index.add_pack(pid, size, entries)
    return problems


def plan(
    vault: Records,
    marked: Marked,
    threshold: float,
    cutoff: float,
    *,
    drop: frozenset[str] = frozenset(),
    keep: frozenset[str] = frozenset(),
    copy: bool = True,
) -> Plan:
    """Which packs die, which are repacked, which manifests and recipes go.

    A live chunk is *covered* by a pack that stays and holds it under the chunk's highest key
    slot (the copy a read uses). A pack with no uncovered live chunk dies. A pack whose live
    fraction (of its blobs' bytes) is under ``threshold`` (or that is in ``drop``: repacked
    already) is not a keeper: with ``copy`` its uncovered live chunks are copied and it dies,
    else it stays. Objects
    modified after ``cutoff`` are never touched, and the packs in ``keep`` (this gc's own
    repack output) always stay: a store's clock (coarse file times, another server) may date
    them before ``cutoff``, and they hold the copies the packs in ``drop`` die for.
    """
    out = Plan()
    listed = {layout.name_from_key(i.key): i for i in vault.primary.list(layout.PACKS)}
    rows = vault.index.chunk_packs()
    top: dict[bytes, int] = {}
    for entries in rows.values():
        for cid, _off, _stored, _raw, _codec, slot in entries:
            if cid in marked.chunks and slot > top.get(cid, -1):
                top[cid] = slot
    live = {
        pid: [e for e in entries if e[0] in marked.chunks and e[5] == top[e[0]]]
        for pid, entries in rows.items()
    }
    kept: set[str] = set()
    for pid in rows:
        info = listed.get(pid)
        if info is None:
            continue  # gone already (a missing live pack is verify's finding, not gc's)
        # the live share of the pack's blobs: its table and footer would be rewritten anyway, so
        # counting them made a small pack of live chunks look sparse to every gc, forever
        live_stored = sum(e[2] for e in live[pid])
        blobs = sum(e[2] for e in rows[pid])
        young = info.mtime >= cutoff or pid in keep
        if young or (live[pid] and pid not in drop and live_stored / max(blobs, 1) >= threshold):
            kept.add(pid)
    covered = {e[0] for pid in kept for e in live[pid]}
    for pid in sorted(rows):
        info = listed.get(pid)
        if info is None or pid in kept:
            continue
        need = [e for e in live[pid] if e[0] not in covered]
        covered.update(e[0] for e in need)
        if need and not copy:
            continue  # something live since the first mark: it stays
        if need:
            out.sparse[pid] = need
            out.live_bytes_to_copy += sum(e[2] for e in need)
        out.dead[pid] = info.size
    for pid, info in listed.items():
        if pid not in rows and info.mtime < cutoff:
            out.orphans[pid] = info.size
    for info in vault.primary.list(layout.MANIFESTS):
        name = layout.name_from_key(info.key)
        if name not in marked.commits and info.mtime < cutoff:
            out.manifests.append(name)
    objects = set()
    for info in vault.primary.list(layout.RECIPES):
        name = layout.name_from_key(info.key)
        objects.add(name)
        if name not in marked.recipes and info.mtime < cutoff:
            out.recipes.append(name)
    # a row goes with its object; a row without one (an inline recipe's) once nothing live names it
    unused = vault.index.recipe_names(before=datetime.fromtimestamp(cutoff, UTC))
    out.rows = sorted(unused - marked.recipes - objects)
    return out


Entry = tuple[bytes, int, int, int, int, int]  # chunk id, offset, stored len, raw len, codec, key slot


def _repack(vault: Records, sparse: dict[str, list[Entry]]) -> tuple[list[str], int]:
    """Copy the given live chunks, as stored, into new packs (journaled); (new pack ids, bytes)."""
    sink = PackSink(
        vault.backend,
        vault.index,
        default_temp_factory(vault.backend, vault.settings.home / "tmp"),
        vault.settings.pack_size,
        on_sealed=vault.journal_pack,
    )
    plain = BlobCodec()
    try:
        for pid, entries in sparse.items():
            for cid, offset, stored_len, raw_len, codec, slot in sorted(entries, key=lambda e: e[1]):
                blob = vault.backend.get_range(layout.pack_key(pid), offset, stored_len)
                if len(blob) != stored_len:
                    raise IntegrityError(f"pack {pid} is truncated")
                if not codec & 0x80:  # plain blobs are checked before they become the only copy
                    raw = plain.decode(codec, memoryview(blob), raw_len, cid, slot)
                    if len(raw) != raw_len or plain_chunk_id(raw) != cid:
                        raise IntegrityError(f"chunk {cid.hex()} in pack {pid} is corrupt")
                sink.add(cid, blob, raw_len, codec, slot)
        sink.flush()
    except BaseException:
        sink.abort()
        raise
    return sink.packs_written, sum(vault.primary.stat(layout.pack_key(p)).size for p in sink.packs_written)


def _copy_cost(vault: Records, p: Plan) -> int:
    """The size of the packs a repack of ``p.sparse`` writes: blobs, tables and footers."""
    if not p.sparse:
        return 0
    chunks = sum(len(e) for e in p.sparse.values())
    packs = -(-p.live_bytes_to_copy // vault.settings.pack_size) or 1
    return p.live_bytes_to_copy + ENTRY.size * chunks + FOOTER.size * packs


def collect(vault: Records, grace_seconds: float, *, dry_run: bool = False, force: bool = False) -> GcReport:
    threshold = vault.settings.gc_repack_threshold
    if dry_run:
        vault.refresh()
        problems = learn_unknown_packs(vault)
        marked = mark(vault)
        marked.problems.extend(problems)
        cutoff = (datetime.now(UTC) - timedelta(seconds=grace_seconds)).timestamp()
        p = plan(vault, marked, threshold, cutoff)
        freed = sum(p.dead.values()) + sum(p.orphans.values())
        cost = _copy_cost(vault, p)
        return GcReport(
            packs_deleted=len(p.dead) + len(p.orphans),
            bytes_freed=freed - cost,
            packs_repacked=len(p.sparse),
            bytes_rewritten=cost,
            manifests_deleted=len(p.manifests),
            recipes_deleted=len(p.recipes),
            temp_files_deleted=0,
            secondary_objects_deleted=0,
            dry_run=True,
            problems=marked.problems,
        )
    stale, wait = vault.settings.lock_stale_seconds, vault.settings.lock_wait_seconds
    with holding(vault.primary, GC, stale_seconds=stale, wait_seconds=wait):
        vault.refresh()
        unknown = learn_unknown_packs(vault)
        marked = mark(vault)
        marked.problems.extend(unknown)
        if marked.problems and not force:
            raise UnparseableObjectsError(
                f"gc deletes nothing while {len(marked.problems)} object(s) cannot be read: "
                f"{marked.problems[0]}; repair or remove them, or run gc --force"
            )
        cutoff = (datetime.now(UTC) - timedelta(seconds=grace_seconds)).timestamp()
        first = plan(vault, marked, threshold, cutoff)
        new_packs, rewritten = _repack(vault, first.sparse) if first.sparse else ([], 0)
        with holding(vault.primary, EXCLUSIVE, stale_seconds=stale, wait_seconds=wait):
            vault.refresh()
            unknown = learn_unknown_packs(vault)
            marked = mark(vault)  # pushes that committed while we repacked are roots now
            marked.problems.extend(unknown)
            if marked.problems and not force:
                raise UnparseableObjectsError(
                    f"gc deletes nothing while {len(marked.problems)} object(s) cannot be read: "
                    f"{marked.problems[0]}; repair or remove them, or run gc --force"
                )
            final = plan(
                vault,
                marked,
                threshold,
                cutoff,
                drop=frozenset(first.sparse),
                keep=frozenset(new_packs),
                copy=False,
            )
            packs = {**final.dead, **final.orphans}
            if packs or final.manifests or final.recipes:
                vault.journal_change(
                    GONE,
                    packs=sorted(packs),
                    manifests=sorted(final.manifests),
                    recipes=sorted(final.recipes),
                )
            for pid in packs:
                vault.backend.delete(layout.pack_key(pid))
                vault.backend.delete(layout.index_key(pid))
            for commit in final.manifests:
                vault.backend.delete(layout.manifest_key(commit))
            for name in final.recipes:
                vault.backend.delete(layout.recipe_key(name))
            vault.index.drop_packs(packs)
            before = datetime.fromtimestamp(cutoff, UTC)
            vault.index.drop_objects(final.manifests, final.recipes, unused_rows=final.rows, before=before)
            secondary = _clean_secondaries(vault, marked, cutoff)
    # a temp file may be a live writer's work in flight (a lock, a pack being written), which no
    # lock announces: only one older than a lock may go unrefreshed is surely abandoned
    temps = _clean_temps(vault, min(cutoff, datetime.now(UTC).timestamp() - stale))
    return GcReport(
        packs_deleted=len(packs),
        bytes_freed=sum(packs.values()) - rewritten,
        packs_repacked=len([p for p in first.sparse if p in packs]),
        bytes_rewritten=rewritten,
        manifests_deleted=len(final.manifests),
        recipes_deleted=len(final.recipes),
        temp_files_deleted=temps,
        secondary_objects_deleted=secondary,
        dry_run=False,
        problems=marked.problems,
        new_packs=len(new_packs),
    )


def _clean_secondaries(vault: Records, marked: Marked, cutoff: float) -> int:
    """Delete from each secondary what is dead there: objects the primary no longer has, that no
    live version needs (a pack the index still knows may be the last good copy: it stays)."""
    if vault.replicas is None:
        return 0
    known_packs = {p.id for p in vault.index.packs()}
    n = 0
    for name in vault.replicas.names:
        if name == vault.replicas.primary_name:
            continue
        backend = vault.replicas.backend(name)
        try:
            n += _clean_one(vault.primary, backend, marked, known_packs, cutoff)
        except StorageError:
            continue  # unreachable: the next gc cleans it
    return n


def _clean_one(primary: Backend, backend: Backend, marked: Marked, known: set[str], cutoff: float) -> int:
    n = 0
    for prefix, live in (
        (layout.PACKS, known),
        (layout.INDEX, known),
        (layout.MANIFESTS, marked.commits),
        (layout.RECIPES, marked.recipes),
    ):
        have = {layout.name_from_key(i.key) for i in primary.list(prefix)}
        for info in list(backend.list(prefix)):
            name = layout.name_from_key(info.key)
            if name in have or name in live or info.mtime >= cutoff:
                continue
            with contextlib.suppress(MissingObjectError):
                backend.delete(info.key)
            n += 1
    return n


def _clean_temps(vault: Records, cutoff: float) -> int:
    temps = 0
    stale = getattr(vault.primary, "stale_temp_files", None)
    if callable(stale):
        for info in list(stale()):
            if info.mtime < cutoff:
                vault.primary.remove_temp_file(info.key)  # type: ignore[attr-defined]
                temps += 1
    if vault.cache is not None:
        temps += vault.cache.clean_temp(cutoff)
    return temps
