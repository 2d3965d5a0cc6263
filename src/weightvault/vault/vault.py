"""The one façade every interface uses. It knows nothing of transport: a remote client can
implement the same methods over REST."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from weightvault.cas.chunker import Chunker
from weightvault.core import layout
from weightvault.core.errors import (
    ConfigError,
    ConflictError,
    MissingObjectError,
    ObjectExistsError,
    RevisionNotFoundError,
    VersionExistsError,
)
from weightvault.core.manifest import FileEntry, FileRecipe, Manifest
from weightvault.core.names import check_label, check_model_name
from weightvault.core.revision import Ref, parse_ref
from weightvault.core.types import GcReport, ModelInfo, PullResult, PushResult, VerifyReport, VersionInfo
from weightvault.registry.index import RegistryIndex, VersionRecord
from weightvault.storage.backend import Backend
from weightvault.storage.replica import ReplicaSet
from weightvault.vault import gc as gc_module
from weightvault.vault import recover as recover_module
from weightvault.vault import replication as replication_module
from weightvault.vault import verify as verify_module
from weightvault.vault.cache import FileCache
from weightvault.vault.config import Settings, load_settings
from weightvault.vault.packer import PackSink, default_temp_factory
from weightvault.vault.pull import check_dest_parent, materialise, plan, select_files
from weightvault.vault.push import PushPipeline
from weightvault.vault.reader import ChunkReader
from weightvault.vault.replicas import open_stores
from weightvault.vault.source import scan_source
from weightvault.vault.store import Store

Progress = Callable[[int], None]
#: Called once per operation with the total byte count before work starts.
ProgressStart = Callable[[int], None]


def timestamp_label(now: datetime) -> str:
    return now.strftime("%Y%m%d%H%M%S")


class Vault:
    """Push, pull, list, show, delete, verify, gc and recover model versions."""

    def __init__(
        self, settings: Settings, backend: Backend | None = None, index: RegistryIndex | None = None
    ) -> None:
        self.settings = settings
        settings.home.mkdir(parents=True, exist_ok=True)
        self.replicas: ReplicaSet | None = None
        if backend is None:
            backend, self.replicas = open_stores(settings)
        self.backend: Backend = backend
        #: where pushes write first; with replicas, secondaries are filled after each version commits
        self.primary: Backend = (
            self.replicas.backend(self.replicas.primary_name) if self.replicas is not None else backend
        )
        self.store = Store(self.backend)
        self._background: list[threading.Thread] = []
        self.index = index or (
            RegistryIndex(settings.database_url)
            if settings.database_url
            else RegistryIndex.sqlite(settings.home / "index.db")
        )
        self.cache = (
            FileCache(settings.cache_path, settings.cache_max_bytes) if settings.cache_enabled else None
        )
        self.chunker = Chunker(self.store.config.chunking)
        self.reader = ChunkReader(self.backend, self.index)

    @classmethod
    def open(
        cls, path: Path | str | None = None, *, config: Path | str | None = None, **overrides: Any
    ) -> Vault:
        """Open (creating if needed) the vault at ``path``, ``$WEIGHTVAULT_HOME`` or ``~/.weightvault``."""
        return cls(load_settings(path, config, **overrides))

    def close(self) -> None:
        for thread in self._background:  # background replication gets a bounded chance to finish
            thread.join(timeout=30)
        self.index.close()
        self.backend.close()

    def __enter__(self) -> Vault:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- reading the registry ----------------------------------------------------------------

    def _info(self, rec: VersionRecord, with_files: bool = False) -> VersionInfo:
        files: tuple[FileEntry, ...] = ()
        lineage: tuple[dict[str, Any], ...] = ()
        if with_files:
            manifest = self._manifest(rec.commit)
            files = tuple(sorted(manifest.files, key=lambda f: f.path))
            lineage = tuple(dict(x) for x in manifest.lineage)
        return VersionInfo(
            model=rec.model,
            label=rec.label,
            commit=rec.commit,
            created=rec.created,
            message=rec.message,
            metadata=rec.metadata,
            total_size=rec.total_size,
            file_count=rec.file_count,
            parent=rec.parent,
            aliases=rec.aliases,
            files=files,
            lineage=lineage,
        )

    def _manifest(self, commit: str) -> Manifest:
        body = self.index.get_manifest(commit)
        if body is not None:
            return Manifest.from_bytes(body)
        return self.store.get_manifest(commit)

    def _recipe(self, sha256: str) -> FileRecipe:
        body = self.index.get_recipe(sha256)
        if body is not None:
            return FileRecipe.from_bytes(body)
        try:
            return self.store.get_recipe(sha256)
        except MissingObjectError:
            raise MissingObjectError(f"recipe for file {sha256} is missing from the store") from None

    def list_models(self) -> list[ModelInfo]:
        return [self.model(name) for name in self.index.list_model_names()]

    def model(self, name: str) -> ModelInfo:
        check_model_name(name)
        versions = tuple(self._info(r) for r in self.index.list_versions(name))
        return ModelInfo(name, self.index.model_created(name), versions, self.index.aliases(name))

    def list_versions(self, model: str) -> list[VersionInfo]:
        check_model_name(model)
        return [self._info(r) for r in self.index.list_versions(model)]

    def show(self, ref: str | Ref) -> VersionInfo:
        r = parse_ref(ref) if isinstance(ref, str) else ref
        return self._info(self.index.resolve(r.model, r.revision), with_files=True)

    def resolve(self, ref: str | Ref) -> VersionInfo:
        r = parse_ref(ref) if isinstance(ref, str) else ref
        return self._info(self.index.resolve(r.model, r.revision))

    # ---- push -----------------------------------------------------------------------------------

    def push(
        self,
        model: str,
        source: Path | str,
        *,
        version: str | None = None,
        message: str = "",
        metadata: dict[str, str] | None = None,
        lineage: Sequence[dict[str, Any]] = (),
        parent: str | None = None,
        progress: Progress | None = None,
        on_start: ProgressStart | None = None,
    ) -> PushResult:
        started = time.perf_counter()
        check_model_name(model)
        if version is not None:
            check_label(version)
            if self.index.label_exists(model, version):
                raise VersionExistsError(f"version {model}@{version} already exists")
        files = scan_source(source)
        if on_start:
            on_start(sum(f.size for f in files))
        if parent is None:
            with contextlib.suppress(Exception):
                parent = self.index.resolve(model, None).commit
        sink = PackSink(
            self.backend,
            self.index,
            default_temp_factory(self.backend, self.settings.home / "tmp"),
            self.settings.pack_size,
        )
        pipeline = PushPipeline(self.index, sink, self.chunker, self.settings.workers, progress)
        try:
            recipes = pipeline.run(files)
        finally:
            self.index.release_probes()
        for recipe in recipes:
            body = self.store.put_recipe(recipe)
            self.index.put_recipe(recipe.sha256, recipe.size, body)
        manifest = Manifest(
            model=model,
            files=tuple(FileEntry(f.path, r.size, r.sha256) for f, r in zip(files, recipes, strict=True)),
            parent=parent,
            message=message,
            metadata=dict(metadata or {}),
            lineage=tuple(lineage),
        )
        commit, body = self.store.put_manifest(manifest)
        created = datetime.now(UTC)
        label = self._create_ref(model, version, commit, created)
        all_chunks = {cid for r in recipes for cid, _ in r.chunks}
        try:
            rec = self.index.add_version(
                model=model,
                label=label,
                commit=commit,
                parent=parent,
                created=created,
                message=message,
                metadata=dict(metadata or {}),
                total_size=manifest.total_size,
                file_count=len(files),
                manifest=body,
                required_packs=self.index.pack_ids_for_chunks(all_chunks),
                required_recipes={r.sha256 for r in recipes},
            )
        except BaseException:
            self.primary.delete(layout.version_ref_key(model, label))
            raise
        replication = self._replicate_version(rec)
        return PushResult(
            version=self._info(rec),
            bytes_read=pipeline.bytes_read,
            bytes_written=sink.bytes_written,
            chunks_total=pipeline.chunks_total,
            chunks_new=pipeline.chunks_new,
            seconds=time.perf_counter() - started,
            replication=replication,
        )

    def _replicate_version(self, rec: VersionRecord) -> dict[str, str]:
        if self.replicas is None or not self.settings.sync_enabled:
            return {}
        keys = replication_module.version_keys(self, rec)
        if self.settings.replication == "inline":
            return replication_module.replicate(self, self.replicas, keys)
        replicas = self.replicas
        thread = threading.Thread(
            target=replication_module.replicate, args=(self, replicas, keys), name="wv-replicate", daemon=True
        )
        thread.start()
        self._background.append(thread)
        return {n: "background" for n in replicas.names if n != replicas.primary_name}

    def _create_ref(self, model: str, version: str | None, commit: str, created: datetime) -> str:
        if version is not None:
            try:
                self.store.create_version_ref(model, version, commit, created)
            except ObjectExistsError:
                raise VersionExistsError(f"version {model}@{version} already exists in the store") from None
            return version
        base = timestamp_label(created)
        for n in range(1000):
            label = base if n == 0 else f"{base}-{n}"
            if self.index.label_exists(model, label):
                continue
            try:
                self.store.create_version_ref(model, label, commit, created)
                return label
            except ObjectExistsError:
                continue
        raise VersionExistsError(f"could not find a free timestamp label for {model} at {base}")

    # ---- pull -----------------------------------------------------------------------------------

    def pull(
        self,
        ref: str | Ref,
        dest: Path | str,
        *,
        include: Sequence[str] | None = None,
        exclude: Sequence[str] | None = None,
        force: bool = False,
        provider: str | None = None,
        progress: Progress | None = None,
        on_start: ProgressStart | None = None,
    ) -> PullResult:
        started = time.perf_counter()
        if provider is not None:
            if self.replicas is None:
                if provider != self.settings.storage_type:
                    raise ConfigError(
                        f"no replica named {provider!r}: this vault has only {self.settings.storage_type!r}"
                    )
            else:
                self.replicas.backend(provider)  # unknown names are a clear error
        self.reader.prefer = provider
        if self.replicas is not None:
            self.replicas.drain_failures()
        info = self.show(ref)
        dest_path = Path(dest).absolute()
        check_dest_parent(dest_path)
        files = select_files(info.files, include, exclude)
        planned = plan(dest_path, files, force, self.cache)
        if on_start:
            on_start(sum(p.entry.size for p in planned))
        dest_path.mkdir(exist_ok=True)
        counters = materialise(
            planned,
            self._recipe,
            self.reader,
            self.cache,
            self.settings.workers,
            progress or (lambda n: None),
        )
        if self.cache is not None:
            self.cache.prune(keep=frozenset(p.entry.sha256 for p in planned))
        return PullResult(
            version=info,
            files=tuple(f.path for f in files),
            bytes_total=sum(f.size for f in files),
            bytes_from_cache=counters.from_cache,
            bytes_from_store=counters.from_store,
            seconds=time.perf_counter() - started,
            fallbacks=tuple(
                f"{f.replica}: {f.key} {f.kind.value}"
                for f in (self.replicas.drain_failures() if self.replicas else [])
            ),
        )

    # ---- changing names -------------------------------------------------------------------------

    def delete(self, ref: str | Ref, *, primary_only: bool = False) -> VersionInfo:
        """Remove a version's label and its aliases (from every replica unless ``primary_only``);
        its data goes at the next ``gc``."""
        r = parse_ref(ref) if isinstance(ref, str) else ref
        if r.revision is None:
            raise RevisionNotFoundError(f"say which version of {r.model} to delete (MODEL@VERSION)")
        rec = self.index.resolve(r.model, r.revision)
        target = self.primary if primary_only else self.backend
        for alias in rec.aliases:
            target.delete(layout.alias_ref_key(r.model, alias))
        target.delete(layout.version_ref_key(r.model, rec.label))
        self.index.delete_version(r.model, rec.label)
        return self._info(rec)

    def set_alias(self, model: str, alias: str, revision: str) -> VersionInfo:
        check_model_name(model)
        check_label(alias, "alias")
        rec = self.index.resolve(model, revision)
        if self.index.label_exists(model, alias):
            raise ConflictError(f"{alias!r} is a version label of {model}; an alias cannot shadow it")
        self.store.set_alias_ref(model, alias, rec.label, rec.commit)
        self.index.set_alias(model, alias, rec.label)
        return self._info(self.index.resolve(model, rec.label))

    def remove_alias(self, model: str, alias: str) -> None:
        check_model_name(model)
        check_label(alias, "alias")
        if alias not in self.index.aliases(model):
            raise RevisionNotFoundError(f"alias {alias!r} of model {model!r} not found")
        self.store.delete_alias_ref(model, alias)
        self.index.remove_alias(model, alias)

    # ---- maintenance ----------------------------------------------------------------------------

    def verify(
        self, ref: str | Ref | None = None, *, read_data: bool = False, progress: Progress | None = None
    ) -> VerifyReport:
        return verify_module.verify(self, ref, read_data=read_data, progress=progress)

    def gc(self, *, grace_seconds: float | None = None) -> GcReport:
        grace = self.settings.gc_grace_seconds if grace_seconds is None else grace_seconds
        return gc_module.collect(self, grace)

    def recover(self) -> dict[str, int]:
        return recover_module.rebuild_index(self)

    # ---- replicas -------------------------------------------------------------------------------

    def _replica_set(self) -> ReplicaSet:
        if self.replicas is None:
            raise ConfigError("this vault has a single store; configure replicas to sync or repair")
        return self.replicas

    def sync(self, progress: Progress | None = None) -> replication_module.SyncReport:
        """Copy to every secondary whatever the primary has and it lacks."""
        return replication_module.sync(self, self._replica_set(), progress)

    def repair(self, progress: Progress | None = None) -> replication_module.RepairReport:
        """Re-read every object of every version on every replica; rewrite bad copies from good ones."""
        return replication_module.repair(self, self._replica_set(), progress)

    def replica_status(self, ref: str | Ref) -> dict[str, bool | str]:
        """Per replica: whether the version is complete there."""
        r = parse_ref(ref) if isinstance(ref, str) else ref
        rec = self.index.resolve(r.model, r.revision)
        if self.replicas is None:
            return {self.settings.storage_type: True}
        return replication_module.status(self, self.replicas, rec)

    def stats(self) -> dict[str, Any]:
        out = self.index.stats()
        out["store_bytes"] = sum(o.size for o in self.backend.list(""))
        out["store_url"] = self.backend.url
        if self.cache is not None:
            out["cache_bytes"] = self.cache.total_bytes()
            out["cache_max_bytes"] = self.cache.max_bytes
        return out
