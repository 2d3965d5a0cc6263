"""Rebuilding the registry index from the store alone (any single replica and its keys).

The new index is built aside (a fresh SQLite file in the home) and copied over the live one in
one transaction only when it is complete, so a failed or interrupted recover leaves the old
index as it was. Order: packs (from their index objects, or from the table at the end of the
pack when the index object is lost), recipes, then versions oldest first, then aliases. Every
object that cannot be read or parsed is named with the reason; the rest is recovered.
Sealed recipes are recorded as stored; opening them (with the keys of each encrypted model) is
how recover tells them from garbage.
"""

from __future__ import annotations

import contextlib
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from weightvault.core import layout
from weightvault.core.errors import (
    CorruptObjectError,
    FormatError,
    IntegrityError,
    MissingObjectError,
    WeightvaultError,
)
from weightvault.core.manifest import FileRecipe
from weightvault.core.types import RecoverReport
from weightvault.registry.index import RegistryIndex
from weightvault.vault.keyring import Domain, is_sealed_recipe
from weightvault.vault.refresh import CURSOR, STORE_ID, inline_recipe_rows, read_table, version_row
from weightvault.vault.store import RefRefusedError

if TYPE_CHECKING:
    from weightvault.vault.state import VaultState


def _when(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _open_recipe(name: str, data: bytes, domains: list[Domain]) -> FileRecipe:
    """A plain recipe (named by its file's SHA-256) or a sealed one of one of ``domains``."""
    if not is_sealed_recipe(data):
        return FileRecipe.named(data, name)
    for dom in domains:
        try:
            return FileRecipe.from_bytes(dom.open_recipe(name, data))
        except CorruptObjectError:
            continue
    raise CorruptObjectError(f"sealed recipe {name} opens with the keys of no model")


def rebuild_index(vault: VaultState) -> RecoverReport:
    # Every encrypted model's keys are opened first: sealed recipes can only be told apart with
    # them, and a key problem should stop recover while the index is intact.
    vault.keys.forget()
    domains = [d for m in vault.keys.models() if (d := vault.keys.domain(m)) is not None]
    path = vault.settings.home / f"recover-{uuid.uuid4().hex[:8]}.db"
    aside = RegistryIndex.sqlite(path)
    try:
        report = _build(vault, aside, domains)
        vault.index.replace_with(aside)
    finally:
        aside.close()
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                path.with_name(path.name + suffix).unlink()
    return report


def _build(vault: VaultState, index: RegistryIndex, domains: list[Domain]) -> RecoverReport:
    backend, store = vault.backend, vault.store
    report = RecoverReport(
        {"packs": 0, "recipes": 0, "versions": 0, "aliases": 0, "skipped": 0, "refused_refs": 0}
    )
    counts = report.counts

    def skip(what: str, exc: BaseException | str) -> None:
        counts["skipped"] += 1
        report.problems.append(f"{what}: {exc}")

    head = vault.journal.head()  # before the listings: what is written meanwhile is applied later
    packs = []
    objects: set[str] = set()
    for info in backend.list(layout.PACKS):
        pack_id = layout.name_from_key(info.key)
        try:
            size, entries = read_table(backend, pack_id, info.size)
        except (IntegrityError, MissingObjectError) as exc:
            skip(info.key, exc)
            continue
        packs.append((pack_id, size, entries, _when(info.mtime)))
        counts["packs"] += 1
    index.add_packs(packs)

    for info in backend.list(layout.RECIPES):
        name = layout.name_from_key(info.key)
        try:
            data = backend.get(info.key)
            recipe = _open_recipe(name, data, domains)
        except (IntegrityError, MissingObjectError) as exc:
            skip(info.key, exc)
            continue
        index.put_recipe(name, recipe.size, data, created=_when(info.mtime))
        counts["recipes"] += 1
        objects.add(name)

    found, bad = store.ref_keys()
    for key in bad:
        skip(key, "not a ref key of this store format")
    versions: list[tuple[datetime, str, str, str]] = []
    aliases: list[tuple[str, str, str]] = []
    for (model, kind, name), key in found.items():
        try:
            body = store.get_ref(model, kind, name)
        except RefRefusedError as exc:  # an encrypted model's ref that fails authentication
            skip(key, exc)
            counts["refused_refs"] += 1
            continue
        except IntegrityError as exc:
            skip(key, exc)
            continue
        if body is None:
            continue
        if kind == "version":
            versions.append((datetime.fromisoformat(body["created"]), model, name, body["commit"]))
        else:
            aliases.append((model, name, body["label"]))
    rows = []
    manifests = []
    for created, model, label, commit in sorted(versions):
        key = layout.version_ref_key(model, label)
        try:
            manifest, stored = store.read_manifest(commit)
            if manifest.model != model:  # a manifest swapped in from another model
                raise FormatError(f"its manifest {commit} is of model {manifest.model!r}")
        except (MissingObjectError, IntegrityError) as exc:
            skip(key, exc)
            continue
        ref = {"commit": commit, "created": created.isoformat()}
        rows.append(version_row(model, label, ref, manifest, stored))
        manifests.append(manifest)
    counts["versions"] += index.add_versions(rows)
    # inline recipes recover from their manifests (a recipe object of the same file was taken above)
    inline = [r for r in inline_recipe_rows(manifests) if r[0] not in objects]
    index.put_recipes(inline)
    counts["recipes"] += len(inline)
    for model, alias, label in aliases:
        try:
            index.set_alias(model, alias, label)
            counts["aliases"] += 1
        except WeightvaultError as exc:
            skip(layout.alias_ref_key(model, alias), exc)
    index.set_state(STORE_ID, store.config.store_id)
    index.set_state(CURSOR, str(head))
    return report
