"""Mark-and-sweep garbage collection with a grace period, safe against concurrent pushes.

Roots are every version the index knows plus every version ref in the store. A dead pack is
first *condemned*; it is deleted by a later run once it has been condemned (and has existed)
for longer than the grace period. A push that reuses a condemned pack un-condemns it in the
same transaction that makes its version visible, and the sweep refuses to run if any version
became visible after the mark started. Objects in the store that the index never learnt of
(a push killed before recording them) are removed once older than the grace period.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from weightvault.core import layout
from weightvault.core.errors import FormatError, MissingObjectError
from weightvault.core.manifest import Manifest
from weightvault.core.types import GcReport

if TYPE_CHECKING:
    from weightvault.vault.vault import Vault


def mark(vault: Vault) -> tuple[set[str], set[str], set[str]]:
    """(live commits, live recipe names, live pack ids).

    A file's live recipe is the one its model reads (``Vault._find_recipe``): the keyed one in
    an encrypted model that has it, else the plain one. So once ``keys rotate --reencrypt`` has
    given a file its keyed recipe, the plain recipe and the plain chunks are garbage (unless
    another version or model still reads them). Encrypted models need their keys to be marked.
    """
    commits = vault.index.live_commits()
    indexed = set(commits)
    for _model, kind, _name, body in vault.store.refs():
        if kind == "version" and isinstance(body.get("commit"), str):
            commits.add(body["commit"])
    wanted: set[tuple[str, str]] = set()
    for commit in commits:
        try:
            manifest: Manifest = vault._manifest(commit)
        except (MissingObjectError, FormatError):
            if commit in indexed:
                raise
            continue  # a dangling ref in the store: verify reports it; nothing to keep for it
        wanted.update((manifest.model, f.sha256) for f in manifest.files)
    recipes: set[str] = set()
    chunk_ids: set[bytes] = set()
    for model, sha in sorted(wanted):
        name, recipe = vault._find_recipe(sha, model)
        if name not in recipes:
            recipes.add(name)
            chunk_ids.update(cid for cid, _ in recipe.chunks)
    packs = vault.index.pack_ids_for_chunks(chunk_ids)
    return commits, recipes, packs


def collect(vault: Vault, grace_seconds: float) -> GcReport:
    started = datetime.now(UTC)
    cutoff = started - timedelta(seconds=grace_seconds)
    live_commits, live_recipes, live_packs = mark(vault)

    all_packs = vault.index.packs()
    dead = [p.id for p in all_packs if p.id not in live_packs and p.condemned is None]
    revived = [p.id for p in all_packs if p.id in live_packs and p.condemned is not None]
    vault.index.set_condemned(dead, started)
    vault.index.set_condemned(revived, None)
    if grace_seconds == 0:
        cutoff = datetime.now(UTC)

    swept = vault.index.sweep(
        mark_started=started,
        cutoff=cutoff,
        live_commits=live_commits,
        live_recipes=live_recipes,
        live_packs=live_packs,
    )
    packs, commits, recipes = swept if swept is not None else ([], [], [])
    sizes = {p.id: p.size for p in all_packs}
    backend = vault.backend
    for pid in packs:
        backend.delete(layout.pack_key(pid))
        backend.delete(layout.index_key(pid))
    for commit in commits:
        backend.delete(layout.manifest_key(commit))
    for name in recipes:
        backend.delete(layout.recipe_key(name))
    _restore_readded(vault, commits, recipes)

    orphans = _orphans(vault, cutoff.timestamp())
    temps = 0
    stale = getattr(backend, "stale_temp_files", None)
    if callable(stale):
        for info in list(stale()):
            if info.mtime < cutoff.timestamp():
                backend.remove_temp_file(info.key)  # type: ignore[attr-defined]
                temps += 1
    if vault.cache is not None:
        temps += vault.cache.clean_temp(cutoff.timestamp())
    return GcReport(
        packs_deleted=len(packs) + orphans[0],
        bytes_freed=sum(sizes.get(p, 0) for p in packs) + orphans[1],
        packs_condemned=len(dead),
        manifests_deleted=len(commits),
        recipes_deleted=len(recipes),
        temp_files_deleted=temps,
    )


def _restore_readded(vault: Vault, commits: list[str], recipes: list[str]) -> None:
    """A push may re-record a recipe or manifest between our sweep and our deletes: put it back."""
    for name in recipes:
        body = vault.index.get_recipe(name)
        if body is not None:
            vault.backend.put(layout.recipe_key(name), body)
    for commit in commits:
        body = vault.index.get_manifest(commit)
        if body is not None:
            vault.backend.put(layout.manifest_key(commit), body)


def _orphans(vault: Vault, cutoff: float) -> tuple[int, int]:
    """Delete old store objects the index does not know (left by killed pushes)."""
    packs, commits, recipes = vault.index.known_objects()
    ref_commits: set[str] = set()
    with contextlib.suppress(FormatError):
        ref_commits = {b.get("commit", "") for _m, k, _n, b in vault.store.refs() if k == "version"}
    n = freed = 0
    backend = vault.backend
    for prefix, known in (
        (layout.PACKS, packs),
        (layout.INDEX, packs),
        (layout.MANIFESTS, commits | ref_commits),
        (layout.RECIPES, recipes),
    ):
        for info in list(backend.list(prefix)):
            name = layout.name_from_key(info.key)
            if name in known or info.mtime >= cutoff:
                continue
            with contextlib.suppress(MissingObjectError):
                backend.delete(info.key)
            if prefix == layout.PACKS:
                n += 1
                freed += info.size
    return n, freed
