"""Keeping one machine's index in step with the store, which is the truth.

Every change of a ref or of the set of packs is followed by a journal entry
(``vault.journal``). The index remembers the number of the last entry it applied; a refresh
reads the next entries until one is missing. When nothing changed that is one small read.
An index that has no cursor, or that was built from another store, is reconciled with a full
scan: one listing of ``refs/`` and of ``packs/``, and reads of only the refs and pack tables it
does not know yet (docs/format.md, "Refresh").
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from weightvault.cas.pack import FOOTER, PackEntry, decode_table, table_size
from weightvault.core import layout
from weightvault.core.errors import (
    ConflictError,
    FormatError,
    IntegrityError,
    MissingObjectError,
    ModelNotFoundError,
    RevisionNotFoundError,
    VersionExistsError,
)
from weightvault.core.manifest import Manifest
from weightvault.storage.backend import Backend
from weightvault.vault.journal import GONE, PACK, REF

if TYPE_CHECKING:
    from weightvault.registry.index import RegistryIndex
    from weightvault.vault.state import VaultState

CURSOR = "journal_seq"
STORE_ID = "store_id"
#: parallel reads of a full scan (refs, manifests and pack tables are small objects)
SCAN_THREADS = 8


@dataclass
class RefreshReport:
    applied: int = 0
    full_scan: bool = False
    #: objects that could not be read or parsed, each with the reason (they were left out)
    skipped: list[str] = field(default_factory=list)
    #: per model, the integrity error that made the store's refs of it unusable (a forged or
    #: unauthenticated ref, a manifest of another model): reads of it report this, not "not found"
    refused: dict[str, IntegrityError] = field(default_factory=dict)


def refresh(vault: VaultState) -> RefreshReport:
    """Apply every change made to the store since this index last looked."""
    with vault.refresh_lock:
        index = vault.index
        cursor = index.get_state(CURSOR)
        if cursor is None or index.get_state(STORE_ID) != vault.store.config.store_id:
            return full_scan(vault, vault.index)
        report = RefreshReport()
        seq = int(cursor)
        while (entry := vault.journal.read(seq + 1)) is not None:
            apply_entry(vault, vault.index, entry, report)
            seq += 1
            report.applied += 1
            if report.applied % 200 == 0:
                index.set_state(CURSOR, str(seq))
        if report.applied:
            index.set_state(CURSOR, str(seq))
        return report


def apply_entry(
    vault: VaultState, index: RegistryIndex, entry: dict[str, Any], report: RefreshReport
) -> None:
    kind = entry.get("kind")
    try:
        if kind == REF:
            sync_ref(vault, index, str(entry["model"]), str(entry["ref"]), str(entry["name"]), report)
        elif kind == PACK:
            learn_pack(vault.primary, index, str(entry["id"]), entry.get("size"))
        elif kind == GONE:
            index.drop_packs([str(p) for p in entry.get("packs", [])])
            index.drop_objects(
                [str(c) for c in entry.get("manifests", [])], [str(r) for r in entry.get("recipes", [])]
            )
        # other kinds: added by a later weightvault of the same store format, nothing to do here
    except (KeyError, TypeError, ValueError) as exc:
        report.skipped.append(f"journal entry {entry.get('seq')}: {exc}")


def _manifest_for(vault: VaultState, model: str, body: dict[str, Any]) -> tuple[Manifest, bytes]:
    """(the manifest a ref names, the object as stored: sealed in an encrypted model)."""
    manifest, stored = vault.store.read_manifest(body["commit"])
    if manifest.model != model:
        raise FormatError(f"manifest {body['commit']} is of model {manifest.model!r}, not {model!r}")
    return manifest, stored


def version_row(
    model: str, label: str, body: dict[str, Any], manifest: Manifest, stored: bytes
) -> dict[str, Any]:
    """``RegistryIndex.add_version``'s arguments for a version ref and its manifest (``stored``:
    the object as stored, which is what the index keeps)."""
    return {
        "model": model,
        "label": label,
        "commit": body["commit"],
        "parent": manifest.parent,
        "created": datetime.fromisoformat(body["created"]).astimezone(UTC),
        "message": manifest.message,
        "metadata": dict(manifest.metadata),
        "total_size": manifest.total_size,
        "file_count": len(manifest.files),
        "manifest": stored,
    }


def inline_recipe_rows(manifests: Iterable[Manifest]) -> list[tuple[str, int, bytes]]:
    """Index rows for the recipes the manifests carry inline (named by the file's SHA-256, as a
    push records them), so a lookup of a file's chunks by SHA-256 finds them on every machine."""
    rows: dict[str, tuple[str, int, bytes]] = {}
    for manifest in manifests:
        for f in manifest.files:
            recipe = f.inline_recipe()
            if recipe is not None and f.sha256 not in rows:
                rows[f.sha256] = (f.sha256, f.size, recipe.to_bytes())
    return list(rows.values())


def _add_version(
    index: RegistryIndex, model: str, label: str, body: dict[str, Any], found: tuple[Manifest, bytes]
) -> None:
    with contextlib.suppress(VersionExistsError):  # another process on this index applied it first
        index.add_version(**version_row(model, label, body, *found))
    if rows := inline_recipe_rows([found[0]]):
        index.put_recipes(rows)


def sync_ref(
    vault: VaultState,
    index: RegistryIndex,
    model: str,
    kind: str,
    name: str,
    report: RefreshReport,
    prefetched: tuple[dict[str, Any] | None, tuple[Manifest, bytes] | None] | None = None,
) -> None:
    """Make the index agree with one ref of the store (present, moved or deleted)."""
    key = layout.ref_key(model, kind, name)
    try:
        if prefetched is not None:
            body, manifest = prefetched
        else:
            body, manifest = vault.store.get_ref(model, kind, name), None
        if kind == "version":
            have = index.version_commit(model, name)
            if body is None:
                if have is not None:
                    index.delete_version(model, name)
                return
            if have == body["commit"]:
                return
            found = manifest or _manifest_for(vault, model, body)
            if have is not None:
                index.delete_version(model, name)
            _add_version(index, model, name, body, found)
            return
        try:
            current = index.aliases(model).get(name)
        except ModelNotFoundError:
            current = None
        if body is None:
            if current is not None:
                index.remove_alias(model, name)
            return
        label = body["label"]
        if index.version_commit(model, label) is None:
            sync_ref(vault, index, model, "version", label, report)
        if index.version_commit(model, label) is None:
            report.skipped.append(f"{key}: points at {model}@{label}, which does not exist")
            return
        if current != label:
            index.set_alias(model, name, label)
    except MissingObjectError as exc:
        report.skipped.append(f"{key}: {exc}")
    except IntegrityError as exc:
        report.skipped.append(f"{key}: {exc}")
        report.refused[model] = exc
    except (ConflictError, RevisionNotFoundError) as exc:
        report.skipped.append(f"{key}: {exc}")


def read_table(backend: Backend, pack_id: str, size: int | None = None) -> tuple[int, list[PackEntry]]:
    """(pack size, entries) from the pack's ``index/`` object, else from the pack's own footer."""
    try:
        entries = decode_table(backend.get(layout.index_key(pack_id)))
        if size is None:
            size = backend.stat(layout.pack_key(pack_id)).size
        return size, entries
    except (MissingObjectError, FormatError):
        pass  # no usable copy of the table: the pack carries its own
    key = layout.pack_key(pack_id)
    if size is None:
        size = backend.stat(key).size
    if size < FOOTER.size:
        raise FormatError(f"pack {pack_id} is too short to hold a table")
    tail = backend.get_range(key, size - FOOTER.size, FOOTER.size)
    try:
        n = table_size(tail)
    except struct.error as exc:
        raise FormatError(f"pack {pack_id} has no readable footer: {exc}") from exc
    if n > size:
        raise FormatError(f"pack {pack_id} names a table longer than itself")
    return size, decode_table(backend.get_range(key, size - n, n))


def learn_pack(backend: Backend, index: RegistryIndex, pack_id: str, size: Any = None) -> None:
    if index.has_pack(pack_id):
        return
    try:
        real_size, entries = read_table(backend, pack_id, int(size) if size is not None else None)
    except MissingObjectError:
        return  # deleted since (a later entry says so)
    index.add_pack(pack_id, real_size, entries)


def full_scan(vault: VaultState, index: RegistryIndex) -> RefreshReport:
    """Reconcile ``index`` with the store's refs and packs; leaves the cursor at the journal head
    read *before* the listings, so anything written meanwhile is applied by the next refresh."""
    report = RefreshReport(full_scan=True)
    head = vault.journal.head()
    found, bad = vault.store.ref_keys()
    report.skipped.extend(f"{key}: not a ref key of this store format" for key in bad)
    have = index.all_refs()
    for ref in [r for r in have if r not in found]:
        model, kind, name = ref
        try:
            if kind == "alias":
                index.remove_alias(model, name)
            else:
                index.delete_version(model, name)
        except (ModelNotFoundError, RevisionNotFoundError):
            pass
    todo = [r for r in found if r[1] == "version" and r not in have]
    with ThreadPoolExecutor(SCAN_THREADS, thread_name_prefix="wv-scan") as pool:
        fetched = list(pool.map(lambda r: _fetch_version(vault, r[0], r[2]), todo))
    order = sorted(
        zip(todo, fetched, strict=True),
        key=lambda x: x[1][0].get("created", "") if isinstance(x[1], tuple) and x[1][0] else "",
    )
    batch: list[dict[str, Any]] = []
    added: list[Manifest] = []
    for (model, _kind, label), got in order:
        if isinstance(got, str):
            report.skipped.append(f"{layout.version_ref_key(model, label)}: {got}")
            continue
        body, found_manifest = got
        if body is None or found_manifest is None:
            continue  # deleted since the listing
        batch.append(version_row(model, label, body, *found_manifest))
        added.append(found_manifest[0])
    index.add_versions(batch)
    if rows := inline_recipe_rows(added):
        index.put_recipes(rows)
    for model, kind, name in found:
        if kind == "alias":
            sync_ref(vault, index, model, kind, name, report)

    listed = {layout.name_from_key(i.key): i.size for i in vault.primary.list(layout.PACKS)}
    known = {p.id for p in index.packs()}
    index.drop_packs(known - set(listed))
    new = [p for p in listed if p not in known]
    with ThreadPoolExecutor(SCAN_THREADS, thread_name_prefix="wv-scan") as pool:
        tables = list(pool.map(lambda p: _fetch_table(vault.primary, p, listed[p]), new))
    found_packs = []
    for pack_id, table in zip(new, tables, strict=True):
        if isinstance(table, str):
            report.skipped.append(f"{layout.pack_key(pack_id)}: {table}")
        else:
            found_packs.append((pack_id, table[0], table[1], None))
    index.add_packs(found_packs)
    index.set_state(STORE_ID, vault.store.config.store_id)
    index.set_state(CURSOR, str(head))
    return report


def _fetch_version(
    vault: VaultState, model: str, label: str
) -> tuple[dict[str, Any] | None, tuple[Manifest, bytes] | None] | str:
    try:
        body = vault.store.get_ref(model, "version", label)
        return body, (_manifest_for(vault, model, body) if body is not None else None)
    except (FormatError, IntegrityError, MissingObjectError) as exc:
        return str(exc)


def _fetch_table(backend: Backend, pack_id: str, size: int) -> tuple[int, list[PackEntry]] | str:
    try:
        return read_table(backend, pack_id, size)
    except (FormatError, IntegrityError, MissingObjectError) as exc:
        return str(exc)
