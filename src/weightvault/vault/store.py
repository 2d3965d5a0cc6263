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

STORE_FORMAT = 1


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
                raise FormatError(f"store format {raw['format']!r} is not supported by this weightvault")
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
        if not self.backend.exists(key):
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
        if not self.backend.exists(key):
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
        if not self.backend.exists(key):
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

    def refs(self) -> Iterator[tuple[str, str, str, dict[str, Any]]]:
        """(model, kind, name, body) for every ref in the store."""
        for info in self.backend.list(layout.REFS):
            parsed = layout.parse_ref_key(info.key)
            if parsed is None:
                continue
            try:
                body = json.loads(self.backend.get(info.key))
            except MissingObjectError:
                continue
            except ValueError as exc:
                raise FormatError(f"malformed ref {info.key}: {exc}") from exc
            yield (*parsed, body)
