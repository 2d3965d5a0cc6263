"""The store: the format's objects (docs/format.md) on top of one Backend."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from weightvault.cas.chunker import ChunkingParams
from weightvault.core import layout
from weightvault.core.errors import FormatError, IntegrityError, MissingObjectError, ObjectExistsError
from weightvault.core.manifest import FileRecipe, Manifest, canonical_json
from weightvault.storage.backend import Backend, ObjectInfo
from weightvault.storage.replica import ReplicaSet

#: Format 2: fixed-depth ref and keyring keys, the journal and store locks, authenticated refs and
#: sealed manifests of encrypted models (docs/format.md, "Changes in format 2").
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


class ManifestSealer(Protocol):
    """What sealing a manifest needs (an encrypted model's domain)."""

    def commit_id(self, manifest_body: bytes) -> str: ...

    def seal_manifest(self, commit: str, body: bytes) -> bytes: ...


#: The first bytes of a sealed manifest (``vault.keyring.MANIFEST_MAGIC``).
SEALED_MANIFEST_MAGIC = b"WVMANE\x00\x01"


#: Adds a MAC to a ref body of the given kind ("version" or "alias").
RefSigner = Callable[[str, dict[str, Any]], dict[str, Any]]


class RefRefusedError(IntegrityError):
    """A ref in the store is not authentic (``vault.refauth``)."""

    code = "ref_not_authentic"


class Store:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        #: "does the store have it" means the primary: a copy only on a secondary must not make a
        #: push skip writing it to the primary
        self.primary = backend.backend(backend.primary_name) if isinstance(backend, ReplicaSet) else backend
        self.config = self._load_or_init_config()
        #: opens a sealed manifest (set by the vault, which holds the keys)
        self.manifest_opener: Callable[[str, bytes], Manifest] | None = None
        #: refuses a ref that is not authentic (set by the vault, which holds the keys); may
        #: return the ref as it must be read (a ref in transition to a new domain)
        self.ref_checker: Callable[[str, str, str, dict[str, Any]], dict[str, Any] | None] | None = None

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
    def put_manifest(self, manifest: Manifest, sealer: ManifestSealer | None = None) -> tuple[str, bytes]:
        """Write a manifest; returns (commit id, the object as stored). With ``sealer`` (an
        encrypted model's domain) the commit id is keyed and the object sealed."""
        body = manifest.to_bytes()
        if sealer is None:
            commit = manifest.commit_id()
        else:
            commit = sealer.commit_id(body)
            body = sealer.seal_manifest(commit, body)
        key = layout.manifest_key(commit)
        if not self.primary.exists(key):
            self.backend.put(key, body)
        return commit, body

    def parse_manifest(self, commit: str, body: bytes) -> Manifest:
        """A manifest object as stored (plain, or sealed: opened with its model's keys), checked
        against its commit id."""
        if body.startswith(SEALED_MANIFEST_MAGIC):
            if self.manifest_opener is None:
                raise FormatError(f"manifest {commit} is sealed and no keys are at hand")
            return self.manifest_opener(commit, body)
        manifest = Manifest.from_bytes(body)
        if manifest.commit_id() != commit:
            raise FormatError(f"manifest {commit} does not hash to its name")
        return manifest

    def read_manifest(self, commit: str) -> tuple[Manifest, bytes]:
        """(manifest, the object as stored)."""
        body = self.backend.get(layout.manifest_key(commit))
        return self.parse_manifest(commit, body), body

    def get_manifest(self, commit: str) -> Manifest:
        return self.read_manifest(commit)[0]

    def put_recipe(self, recipe: FileRecipe) -> bytes:
        body = recipe.to_bytes()
        key = layout.recipe_key(recipe.sha256)
        if not self.primary.exists(key):
            self.backend.put(key, body)
        return body

    def get_recipe(self, sha256: str) -> FileRecipe:
        return FileRecipe.named(self.backend.get(layout.recipe_key(sha256)), sha256)

    def put_recipe_object(self, name: str, body: bytes) -> None:
        """A recipe object as it is stored (sealed in an encrypted model), written once."""
        key = layout.recipe_key(name)
        if not self.primary.exists(key):
            self.backend.put(key, body)

    def put_recipe_objects(self, objects: Mapping[str, bytes]) -> None:
        """Many recipe objects (a push's), each written once, durable on return. A local store
        writes them as one batch (``LocalBackend.put_many``); others put them many in flight
        (one at a time, a 10,000-file push waited on 10,000 requests in a row). On a remote store
        the check that an object is already there is a request too, so it runs in the same pool."""
        todo = [(layout.recipe_key(n), b) for n, b in objects.items()]
        put_many = getattr(self.backend, "put_many", None)
        if callable(put_many):
            todo = [(k, b) for k, b in todo if not self.primary.exists(k)]  # a stat each
            if len(todo) > 1:
                put_many(todo)
            elif todo:
                self.backend.put(*todo[0])
            return

        def put_absent(key: str, body: bytes) -> None:
            if not self.primary.exists(key):
                self.backend.put(key, body)

        if len(todo) == 1:
            put_absent(*todo[0])
        elif todo:
            with ThreadPoolExecutor(min(16, len(todo)), thread_name_prefix="wv-recipes") as pool:
                for fut in [pool.submit(put_absent, k, b) for k, b in todo]:
                    fut.result()

    def get_recipe_object(self, name: str) -> bytes:
        return self.backend.get(layout.recipe_key(name))

    # refs: a version ref is created once (if_absent); an alias ref is replaced atomically. An
    # encrypted model's refs carry a MAC (``signer``, from ``vault.refauth``).
    def create_version_ref(
        self,
        model: str,
        label: str,
        commit: str,
        created: datetime,
        signer: RefSigner | None = None,
        *,
        replace: bool = False,
    ) -> None:
        """Create the ref (if absent); ``replace`` rewrites it (authenticating an existing version)."""
        body: dict[str, Any] = {
            "model": model,
            "label": label,
            "commit": commit,
            "created": created.isoformat(),
        }
        if signer is not None:
            body = signer("version", body)
        self.backend.put(layout.version_ref_key(model, label), canonical_json(body), if_absent=not replace)

    def delete_version_ref(self, model: str, label: str) -> None:
        self.backend.delete(layout.version_ref_key(model, label))

    def set_alias_ref(
        self,
        model: str,
        alias: str,
        label: str,
        commit: str,
        signer: RefSigner | None = None,
        seq: int | None = None,
    ) -> None:
        """``seq``: the alias's sequence number (encrypted models), which readers pin (rollback)."""
        body: dict[str, Any] = {"model": model, "alias": alias, "label": label, "commit": commit}
        if seq is not None:
            body["seq"] = seq
        if signer is not None:
            body = signer("alias", body)
        self.backend.put(layout.alias_ref_key(model, alias), canonical_json(body))

    def delete_alias_ref(self, model: str, alias: str) -> None:
        self.backend.delete(layout.alias_ref_key(model, alias))

    def shows_encryption(self, model: str, newest: str | None = None) -> bool:
        """Whether the store shows ``model`` to be encrypted, checked before a push treats a model
        without a keyring as plain (docs/security.md, point 4). A fixed number of reads, whatever
        the number of versions: objects under the model's keys folder but no keyring (claims of
        keyring rewrites outlive a deleted keyring), or a MAC on the first ref the listing yields
        or on the ref of version ``newest`` (the newest one this machine's index knows). Every ref
        of an encrypted model carries a MAC, so a bucket writer who deletes the keyring must strip
        the sampled ones to pass, which it could already do to all of them."""
        # the keys folder holds the keyring and one claim per keyring rewrite: one listing page
        keys_folder = {i.key for i in self.backend.list(f"{layout.KEYS}{layout.model_path(model)}/")}
        if keys_folder and layout.keyring_key(model) not in keys_folder:
            return True  # claims outlive a deleted keyring
        first = _first_key(
            self.backend.list(layout.model_refs_prefix(model)), lambda key: _is_ref_of(key, model)
        )
        keys = {first} if first is not None else set()
        if newest is not None:
            keys.add(layout.version_ref_key(model, newest))
        return any(self._carries_mac(key) for key in sorted(keys))

    def _carries_mac(self, key: str) -> bool:
        try:
            body = json.loads(self.backend.get(key))
        except (MissingObjectError, ValueError):
            return False
        return isinstance(body, dict) and "mac" in body

    def get_ref(self, model: str, kind: str, name: str) -> dict[str, Any] | None:
        """A ref's body checked against its key (and, in an encrypted model, its MAC), or None
        when it does not exist. Raises ``FormatError`` or ``RefRefusedError``."""
        key = layout.ref_key(model, kind, name)
        try:
            data = self.backend.get(key)
        except MissingObjectError:
            return None
        body = parse_ref_body(key, model, kind, name, data)
        if self.ref_checker is not None:
            return self.ref_checker(model, kind, name, body) or body
        return body

    def get_raw_ref(self, model: str, kind: str, name: str) -> dict[str, Any] | None:
        """A ref's body as stored (checked against its key only), or None."""
        key = layout.ref_key(model, kind, name)
        try:
            return parse_ref_body(key, model, kind, name, self.backend.get(key))
        except MissingObjectError:
            return None

    def put_ref(self, model: str, kind: str, name: str, body: dict[str, Any]) -> None:
        """Replace a ref with ``body`` (already signed)."""
        self.backend.put(layout.ref_key(model, kind, name), canonical_json(body))

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

    def refs(
        self, refused: list[tuple[str, str]] | None = None
    ) -> Iterator[tuple[str, str, str, dict[str, Any]]]:
        """(model, kind, name, body) for every authentic ref in the store.

        A ref that ``ref_checker`` refuses (an encrypted model's ref without a valid MAC) is
        skipped and, with ``refused``, reported there as (key, reason); a malformed one raises."""
        found, bad = self.ref_keys()
        if bad:
            raise FormatError(f"{bad[0]} is not a ref key of store format {STORE_FORMAT}")
        for (model, kind, name), key in found.items():
            try:
                body = self.get_ref(model, kind, name)
            except RefRefusedError as exc:
                if refused is not None:
                    refused.append((key, str(exc)))
                continue
            if body is not None:
                yield model, kind, name, body


def _is_ref_of(key: str, model: str) -> bool:
    parsed = layout.parse_ref_key(key)
    return parsed is not None and parsed[0] == model


def _first_key(listing: Iterator[ObjectInfo], wanted: Callable[[str], bool]) -> str | None:
    """The first wanted key of a listing, the rest never fetched: every backend lists lazily (a
    page of keys, or a local folder, at a time)."""
    try:
        return next((info.key for info in listing if wanted(info.key)), None)
    finally:
        close = getattr(listing, "close", None)
        if close is not None:
            close()


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
