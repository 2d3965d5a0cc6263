"""The store: the format's objects (docs/format.md) on top of one Backend."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from weightvault.cas.chunker import ChunkingParams
from weightvault.core import layout
from weightvault.core.errors import FormatError, MissingObjectError, ObjectExistsError
from weightvault.core.manifest import FileRecipe, Manifest, canonical_json
from weightvault.storage.backend import Backend
from weightvault.storage.replica import ReplicaSet

#: Format 2: fixed-depth ref and keyring keys, the journal and store locks (docs/format.md).
STORE_FORMAT = 2


@dataclass(frozen=True, slots=True)
class StoreConfig:
    store_id: str
    chunking: ChunkingParams
    created: str

    def to_bytes(self) -> bytes:
        return canonical_json(
            {
                "format": STORE_FORMAT,
                "id": self.store_id,
                "created": self.created,
                "chunk_hash": "blake3",
                "file_hash": "sha256",
                "chunking": {
                    "algorithm": self.chunking.algorithm,
                    "min_size": self.chunking.min_size,
                    "avg_size": self.chunking.avg_size,
                    "max_size": self.chunking.max_size,
                },
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> StoreConfig:
        try:
            raw = json.loads(data)
            if raw["format"] != STORE_FORMAT:
                raise FormatError(
                    f"store format {raw['format']!r} is not supported by this weightvault "
                    f"(it reads and writes format {STORE_FORMAT})"
                )
            c = raw["chunking"]
            params = ChunkingParams(
                int(c["min_size"]), int(c["avg_size"]), int(c["max_size"]), c["algorithm"]
            )
            return cls(raw["id"], params, raw["created"])
        except (ValueError, KeyError, TypeError) as exc:
            raise FormatError(f"malformed store config: {exc}") from exc


@dataclass(frozen=True, slots=True)
class VersionRef:
    model: str
    label: str
    commit: str
    created: datetime


class Store:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        #: "does the store have it" means the primary: a copy only on a secondary must not make a
        #: push skip writing it to the primary
        self.primary = backend.backend(backend.primary_name) if isinstance(backend, ReplicaSet) else backend
        self.config = self._load_or_init_config()

    def _load_or_init_config(self) -> StoreConfig:
        # The primary defines the store: an unreachable secondary must not stop the vault opening.
        home = (
            self.backend.backend(self.backend.primary_name)
            if isinstance(self.backend, ReplicaSet)
            else self.backend
        )
        try:
            return StoreConfig.from_bytes(home.get(layout.CONFIG_KEY))
        except MissingObjectError:
            pass
        fresh = StoreConfig(uuid.uuid4().hex, ChunkingParams(), datetime.now(UTC).isoformat())
        try:
            home.put(layout.CONFIG_KEY, fresh.to_bytes(), if_absent=True)
        except ObjectExistsError:  # another process initialised it first: use theirs
            return StoreConfig.from_bytes(home.get(layout.CONFIG_KEY))
        return fresh

    # manifests and recipes are content-addressed: writing one twice is harmless
    def put_manifest(self, manifest: Manifest) -> tuple[str, bytes]:
        body = manifest.to_bytes()
        commit = manifest.commit_id()
        key = layout.manifest_key(commit)
        if not self.primary.exists(key):
            self.backend.put(key, body)
        return commit, body

    def get_manifest(self, commit: str) -> Manifest:
        body = self.backend.get(layout.manifest_key(commit))
        manifest = Manifest.from_bytes(body)
        if manifest.commit_id() != commit:
            raise FormatError(f"manifest {commit} does not hash to its name")
        return manifest

    def put_recipe(self, recipe: FileRecipe) -> bytes:
        body = recipe.to_bytes()
        key = layout.recipe_key(recipe.sha256)
        if not self.primary.exists(key):
            self.backend.put(key, body)
        return body

    def get_recipe(self, sha256: str) -> FileRecipe:
        recipe = FileRecipe.from_bytes(self.backend.get(layout.recipe_key(sha256)))
        if recipe.sha256 != sha256:
            raise FormatError(f"recipe {sha256} names another file")
        return recipe

    def put_recipe_object(self, name: str, body: bytes) -> None:
        """A recipe object as it is stored (sealed in an encrypted model), written once."""
        key = layout.recipe_key(name)
        if not self.primary.exists(key):
            self.backend.put(key, body)

    def get_recipe_object(self, name: str) -> bytes:
        return self.backend.get(layout.recipe_key(name))

    # refs: a version ref is created once (if_absent); an alias ref is replaced atomically
    def create_version_ref(self, model: str, label: str, commit: str, created: datetime) -> None:
        body = canonical_json(
            {"model": model, "label": label, "commit": commit, "created": created.isoformat()}
        )
        self.backend.put(layout.version_ref_key(model, label), body, if_absent=True)

    def delete_version_ref(self, model: str, label: str) -> None:
        self.backend.delete(layout.version_ref_key(model, label))

    def set_alias_ref(self, model: str, alias: str, label: str, commit: str) -> None:
        body = canonical_json({"model": model, "alias": alias, "label": label, "commit": commit})
        self.backend.put(layout.alias_ref_key(model, alias), body)

    def delete_alias_ref(self, model: str, alias: str) -> None:
        self.backend.delete(layout.alias_ref_key(model, alias))

    def get_ref(self, model: str, kind: str, name: str) -> dict[str, Any] | None:
        """A ref's body checked against its key, or None when it does not exist."""
        key = layout.ref_key(model, kind, name)
        try:
            data = self.backend.get(key)
        except MissingObjectError:
            return None
        return parse_ref_body(key, model, kind, name, data)

    def ref_keys(self) -> tuple[dict[tuple[str, str, str], str], list[str]]:
        """Every ref key in the store, parsed: ({(model, kind, name): key}, [keys that parse as no
        ref of this format])."""
        found: dict[tuple[str, str, str], str] = {}
        bad: list[str] = []
        for info in self.backend.list(layout.REFS):
            parsed = layout.parse_ref_key(info.key)
            if parsed is None:
                bad.append(info.key)
            else:
                found[parsed] = info.key
        return found, bad

    def refs(self) -> Iterator[tuple[str, str, str, dict[str, Any]]]:
        """(model, kind, name, body) for every ref in the store."""
        found, bad = self.ref_keys()
        if bad:
            raise FormatError(f"{bad[0]} is not a ref key of store format {STORE_FORMAT}")
        for (model, kind, name), key in found.items():
            try:
                data = self.backend.get(key)
            except MissingObjectError:
                continue
            yield model, kind, name, parse_ref_body(key, model, kind, name, data)


def parse_ref_body(key: str, model: str, kind: str, name: str, data: bytes) -> dict[str, Any]:
    """A ref body must be a JSON object naming the model and name its key names, and a commit."""
    try:
        body = json.loads(data)
        if not isinstance(body, dict):
            raise ValueError("not a JSON object")
        own = body.get("label" if kind == "version" else "alias")
        if body.get("model") != model or own != name:
            raise ValueError(f"it names {body.get('model')!r}@{own!r}")
        commit, label = body.get("commit"), body.get("label")
        if not isinstance(commit, str) or len(commit) != 40 or not isinstance(label, str):
            raise ValueError("no commit id or label")
        if kind == "version":
            datetime.fromisoformat(body["created"])
    except (ValueError, KeyError, TypeError) as exc:
        raise FormatError(f"malformed ref {key}: {exc}") from exc
    return body
