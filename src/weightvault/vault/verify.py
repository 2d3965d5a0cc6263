"""Checking that every version can be rebuilt: objects present, and with ``read_data`` every
chunk re-read, decoded (decrypted and decompressed) and re-hashed and every file's SHA-256
recomputed. Encrypted models need their keys for their recipes and data."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import TYPE_CHECKING

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
from weightvault.core.revision import Ref, parse_ref
from weightvault.core.types import VerifyReport

if TYPE_CHECKING:
    from weightvault.registry.index import VersionRecord
    from weightvault.vault.records import Records


def _targets(vault: Records, ref: str | Ref | None) -> list[VersionRecord]:
    if ref is None:
        return [v for name in vault.index.list_model_names() for v in vault.index.list_versions(name)]
    r = parse_ref(ref) if isinstance(ref, str) else ref
    if r.revision is None:
        return vault.index.list_versions(r.model)
    return [vault.index.resolve(r.model, r.revision)]


def verify(
    vault: Records, ref: str | Ref | None, *, read_data: bool, progress: Callable[[int], None] | None = None
) -> VerifyReport:
    report = VerifyReport()
    tick = progress or (lambda n: None)
    vault.refresh()  # another machine may have pushed, deleted or repacked since we last looked
    if ref is None:
        report.problems.extend(_store_refs_problems(vault))
    if vault.replicas is not None:
        vault.replicas.drain_failures()
    pack_ok: dict[str, str | None] = {}
    sizes = {p.id: p.size for p in vault.index.packs()}
    for rec in _targets(vault, ref):
        name = f"{rec.model}@{rec.label}"
        report.checked_versions += 1
        problems: list[str] = []
        try:
            manifest = vault.store.get_manifest(rec.commit)
        except (MissingObjectError, IntegrityError) as exc:
            problems.append(f"manifest {rec.commit}: {exc}")
            manifest = vault._manifest(rec.commit)  # the index copy still says what to check
        problems.extend(_check_store_refs(vault, rec))
        try:
            # every chunk hashed against its id, sealed ones too: proving ids is what verify is for
            reader = vault._reader_for(rec.model).rehashing() if read_data else vault.reader
        except (CredentialsError, ConfigError, IntegrityError) as exc:  # key provider errors among them
            problems.append(f"keys of {rec.model}: {exc}")
            report.affected_versions[name] = problems
            report.problems.extend(p for p in problems if p not in report.problems)
            continue
        for entry in manifest.files:
            what = f"{name}:{entry.path}"
            try:
                recipe_name, recipe = vault._find_recipe(
                    entry.sha256, rec.model, inline=entry.inline_recipe()
                )
            except (IntegrityError, CredentialsError, ConfigError) as exc:
                problems.append(f"{what}: recipe: {exc}")
                continue
            inline = entry.chunks is not None and recipe_name == entry.sha256  # no object to check
            stored_problem = (
                None if inline else _check_stored_recipe(vault, rec.model, recipe_name, entry.sha256)
            )
            if stored_problem is not None:
                problems.append(f"{what}: recipe {recipe_name}: {stored_problem}")
            if read_data:
                h = hashlib.sha256()
                try:
                    for raw in reader.chunks([c for c, _ in recipe.chunks], what):
                        h.update(raw)
                        report.checked_chunks += 1
                        report.checked_bytes += len(raw)
                        tick(len(raw))
                    if h.hexdigest() != entry.sha256:
                        problems.append(f"{what}: SHA-256 mismatch")
                except (IntegrityError, StorageError) as exc:
                    problems.append(str(exc))
                if vault.replicas is not None:  # a bad copy that a fallback hid is still a problem
                    problems.extend(
                        f"{what}: replica {f.replica} has a {f.kind.value} copy of {f.key} (run repair)"
                        for f in vault.replicas.drain_failures()
                    )
                continue
            locations = vault.index.locate_chunks([c for c, _ in recipe.chunks])
            report.checked_chunks += len(recipe.chunks)
            missing = [c for c, _ in recipe.chunks if c not in locations]
            if missing:
                problems.append(f"{what}: {len(missing)} chunk(s) not in the index")
            for pack_id in {loc.pack_id for loc in locations.values()}:
                if pack_id not in pack_ok:
                    pack_ok[pack_id] = _check_pack(vault, pack_id, sizes.get(pack_id))
                if pack_ok[pack_id] is not None:
                    problems.append(f"{what}: {pack_ok[pack_id]}")
            tick(entry.size)
        if problems:
            report.affected_versions[name] = problems
            report.problems.extend(p for p in problems if p not in report.problems)
    return report


def _store_refs_problems(vault: Records) -> list[str]:
    """Refs in the store that the index could not take in: malformed keys or bodies, versions
    whose manifest is missing or unreadable, aliases pointing at no version."""
    found, bad = vault.store.ref_keys()
    problems = [f"{key}: not a ref key of this store format" for key in bad]
    known = vault.index.all_refs()
    for (model, kind, name), key in sorted(found.items(), key=lambda x: x[1]):
        if (model, kind, name) in known:
            continue
        try:
            body = vault.store.get_ref(model, kind, name)
            if body is None:
                continue  # deleted since the listing
            if kind == "version":
                vault.store.get_manifest(body["commit"])
            problems.append(f"{key}: in the store but not usable (points at {body['label']!r})")
        except (MissingObjectError, IntegrityError) as exc:
            problems.append(f"{key}: {exc}")
    return problems


def _check_store_refs(vault: Records, rec: VersionRecord) -> list[str]:
    """The store's refs of a version and its aliases: present, authentic (an encrypted model's
    MAC) and naming the commit the index has."""
    out: list[str] = []
    wanted = [("version", rec.label, layout.version_ref_key(rec.model, rec.label))]
    wanted += [("alias", a, layout.alias_ref_key(rec.model, a)) for a in rec.aliases]
    for kind, name, key in wanted:
        try:
            body = json.loads(vault.backend.get(key))
            if not isinstance(body, dict):
                raise FormatError("not an object")
            body = vault._check_ref(rec.model, kind, name, body) or body
        except (IntegrityError, ValueError) as exc:
            out.append(f"{kind} ref {rec.model}@{name}: {exc}")
            continue
        if body.get("commit") != rec.commit:
            out.append(f"{kind} ref {rec.model}@{name} names commit {body.get('commit')}, not {rec.commit}")
    return out


def _check_stored_recipe(vault: Records, model: str, name: str, sha256: str) -> str | None:
    """The store's copy of a recipe: present, and (sealed or not) naming the right file."""
    try:
        data = vault.store.get_recipe_object(name)
        if name == sha256:
            recipe = FileRecipe.from_bytes(data)
        else:
            dom = vault.keys.domain(model)
            if dom is None:
                return "is keyed but the model has no keys"
            recipe = FileRecipe.from_bytes(dom.open_recipe(name, data))
    except (MissingObjectError, IntegrityError) as exc:
        return str(exc)
    if recipe.sha256 != sha256:
        return "names another file"
    return None


def _check_pack(vault: Records, pack_id: str, expected: int | None) -> str | None:
    try:
        info = vault.backend.stat(layout.pack_key(pack_id))
    except MissingObjectError:
        return f"pack {pack_id} is missing"
    if expected is not None and info.size != expected:
        return f"pack {pack_id} has size {info.size}, expected {expected}"
    return None
