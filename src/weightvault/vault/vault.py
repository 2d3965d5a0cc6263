"""The one façade every interface uses. It knows nothing of transport: a remote client can
implement the same methods over REST."""

from __future__ import annotations

import contextlib
import fnmatch
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from weightvault.cas.chunker import Chunker
from weightvault.cas.hashing import chunk_id
from weightvault.cas.pack import decode_table
from weightvault.core import layout
from weightvault.core.errors import (
    ConcurrentModificationError,
    ConfigError,
    ConflictError,
    CorruptObjectError,
    CredentialsError,
    FormatError,
    IntegrityError,
    InvalidInputError,
    MissingObjectError,
    ModelNotFoundError,
    NotFoundError,
    ObjectExistsError,
    RevisionNotFoundError,
    StorageError,
    VersionExistsError,
    WeightvaultError,
)
from weightvault.core.manifest import FileEntry, FileRecipe, Manifest
from weightvault.core.names import check_label, check_model_name, check_new_name, check_relative_path
from weightvault.core.revision import Ref, parse_ref
from weightvault.core.types import (
    GcReport,
    ModelInfo,
    PullResult,
    PushResult,
    RecoverReport,
    VerifyReport,
    VersionInfo,
)
from weightvault.registry.index import RegistryIndex, VersionRecord
from weightvault.storage import oscaps
from weightvault.storage.backend import Backend
from weightvault.storage.local import os_error
from weightvault.storage.replica import ReplicaSet
from weightvault.vault import aliasseq as aliasseq_module
from weightvault.vault import domains as domains_module
from weightvault.vault import gc as gc_module
from weightvault.vault import lineage as lineage_module
from weightvault.vault import recover as recover_module
from weightvault.vault import refauth
from weightvault.vault import refresh as refresh_module
from weightvault.vault import replication as replication_module
from weightvault.vault import safety as safety_module
from weightvault.vault import tensors as tensors_module
from weightvault.vault import verify as verify_module
from weightvault.vault.cache import FileCache
from weightvault.vault.codecs import BlobCodec, BlobEncoder
from weightvault.vault.config import Settings, load_settings
from weightvault.vault.journal import PACK, REF, Journal
from weightvault.vault.keyring import (
    KEYS,
    Domain,
    KeyManager,
    KeyringRecord,
    is_sealed_manifest,
    keyring_key,
    parse_keyring_key,
    provider_params,
    sealed_manifest_model,
)
from weightvault.vault.locks import SHARED, holding
from weightvault.vault.packer import PackSink, default_temp_factory
from weightvault.vault.placement import Placer, check_link_mode
from weightvault.vault.pull import materialise, plan, select_files
from weightvault.vault.push import PushPipeline
from weightvault.vault.reader import ChunkReader
from weightvault.vault.replicas import open_stores
from weightvault.vault.source import SourceFile, scan_source
from weightvault.vault.statcache import StatCache
from weightvault.vault.store import RefSigner, Store
from weightvault.vault.trust import KeyringTrustError, LocalTrust

if TYPE_CHECKING:
    from weightvault.registry.access import AccessStore
    from weightvault.vault import ingest as ingest_types
    from weightvault.vault.domains import NewDomainReport
    from weightvault.vault.rotation import RotateReport
    from weightvault.vault.stream import FileStream

logger = logging.getLogger(__name__)
Progress = Callable[[int], None]
#: Called once per operation with the total byte count before work starts.
ProgressStart = Callable[[int], None]


@dataclass(frozen=True)
class _NewVersion:
    """What a push says about the version it makes, besides its files."""

    model: str
    parent: str | None
    message: str
    metadata: dict[str, str]
    lineage: tuple[dict[str, Any], ...]
    safety: Any


@dataclass
class _Staged:
    """A push's data, written and durable, before its ref makes it a version."""

    pipeline: PushPipeline
    sink: PackSink
    slot: int
    recipe_names: list[str]
    manifest: Manifest
    commit: str
    body: bytes
    packs: set[str]
    #: the latest version, when it already holds exactly these files (nothing is committed)
    same: VersionInfo | None = None


def timestamp_label(now: datetime) -> str:
    return now.strftime("%Y%m%d%H%M%S")


def _make_home(home: Path) -> None:
    """Create the vault home; a home that cannot be one is a one-line error naming it."""
    try:
        home.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ConfigError(f"vault home {home} is not a folder (or lies under a file)") from None
    except OSError as exc:
        raise os_error(exc, f"creating vault home {home}") from exc


def _open_index(settings: Settings) -> RegistryIndex:
    """The index database: ``database_url``, else SQLite in the home. A URL that is not one, or a
    database that cannot be reached, is an error naming the setting (password hidden)."""
    from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

    url = settings.database_url
    try:
        return RegistryIndex(url) if url else RegistryIndex.sqlite(settings.home / "index.db")
    except (ArgumentError, NoSuchModuleError, ValueError) as exc:
        raise ConfigError(f"database_url {_hide_password(url or '')!r} is not usable: {exc}") from None
    except DBAPIError as exc:
        where = f"database_url {_hide_password(url)!r}" if url else f"{settings.home / 'index.db'}"
        raise StorageError(f"cannot open the index database ({where}): {exc.orig}") from None
    except OSError as exc:
        raise os_error(exc, f"opening the index database in {settings.home}") from exc


def _hide_password(url: str) -> str:
    return re.sub(r"(//[^:/@]*:)[^@/]*@", r"\1***@", url)


class Vault:
    """Push, pull, list, show, delete, verify, gc and recover model versions."""

    def __init__(
        self,
        settings: Settings,
        backend: Backend | None = None,
        index: RegistryIndex | None = None,
        *,
        access_control: bool = False,
    ) -> None:
        """``access_control`` says the caller (the server) checks every request's grants; an
        embedded vault has no principals, so ``access_control_enabled`` is refused without it."""
        if settings.access_control_enabled and not access_control:
            raise ConfigError(
                "access_control_enabled: true cannot be honoured by an embedded vault (it has no users "
                "to check); serve the vault through the weightvault server, or set it to false"
            )
        oscaps.check_platform()
        self.settings = settings
        _make_home(settings.home)
        self.replicas: ReplicaSet | None = None
        if backend is None:
            backend, self.replicas = open_stores(settings)
        self.backend: Backend = backend
        #: where pushes write first; with replicas, secondaries are filled after each version commits
        self.primary: Backend = (
            self.replicas.backend(self.replicas.primary_name) if self.replicas is not None else backend
        )
        self.store = Store(self.backend)
        #: every ref change and new pack is announced here; readers follow it (``refresh``)
        self.journal = Journal(self.primary)
        self.refresh_lock = threading.Lock()
        self._refused_refs: dict[str, IntegrityError] = {}
        #: (model, alias) -> why the store's ref of that alias was refused as a rollback
        self._rollbacks: dict[tuple[str, str], refauth.AliasRollbackError] = {}
        self._background: list[threading.Thread] = []
        self.index = index or _open_index(settings)
        self.cache = (
            FileCache(
                settings.cache_path,
                settings.cache_max_bytes,
                private=settings.cache_permissions == "private",
            )
            if settings.cache_enabled
            else None
        )
        self.chunker = Chunker(self.store.config.chunking)
        #: the store-wide reader: plain chunks of any model (encrypted ones need ``_reader_for``)
        self.reader = ChunkReader(self.backend, self.index)
        self.keys = KeyManager(
            settings.key_provider_config,
            self.backend,
            self.primary,
            self.replicas,
            self.store.config.store_id,
            trusted_configs=settings.trusted_provider_configs,
            trust=LocalTrust(settings.home / "keys"),
        )
        self._readers: dict[str, ChunkReader] = {}
        self._readers_lock = threading.Lock()
        self._access: AccessStore | None = None
        self.store.manifest_opener = self._open_sealed_manifest
        self.store.ref_checker = self._check_ref
        #: files this machine hashed before, so a re-push does not read them again (plain models)
        self.stat_cache = StatCache(settings.home / "statcache.db")

    @classmethod
    def open(
        cls,
        path: Path | str | None = None,
        *,
        config: Path | str | None = None,
        token: str | None = None,
        **overrides: Any,
    ) -> Vault:
        """Open (creating if needed) the vault at ``path``, ``$WEIGHTVAULT_HOME`` or ``~/.weightvault``.

        An ``http(s)://`` URL (or ``$WEIGHTVAULT_SERVER`` when no path is given) opens a remote
        vault instead: ``weightvault.client.RemoteVault``, the same methods over a server's REST
        API, authenticated by ``token`` or ``$WEIGHTVAULT_TOKEN``. The client module is imported
        only then: this façade itself knows nothing of transport.
        """
        import os

        target = path if path is not None else os.environ.get("WEIGHTVAULT_SERVER") or None
        if isinstance(target, str) and target.startswith(("http://", "https://")):
            if config is not None or overrides:
                raise ConfigError("a remote vault takes its settings from the server; give only a token")
            import importlib

            client = importlib.import_module("weightvault.client")
            return client.RemoteVault(target, token=token or os.environ.get("WEIGHTVAULT_TOKEN"))  # type: ignore[no-any-return]
        if token is not None:
            raise ConfigError("a token is for a server URL; a local vault needs none")
        return cls(load_settings(path, config, **overrides))

    @property
    def access(self) -> AccessStore:
        """Principals, tokens, grants and the audit log, kept in this vault's index database."""
        if self._access is None:
            from weightvault.registry.access import AccessStore

            self._access = AccessStore(self.index)
        return self._access

    def close(self) -> None:
        for thread in self._background:  # background replication gets a bounded chance to finish
            thread.join(timeout=30)
        self.stat_cache.close()
        self.index.close()
        self.backend.close()

    def __enter__(self) -> Vault:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- following the store --------------------------------------------------------------------

    def refresh(self) -> refresh_module.RefreshReport:
        """Bring the index up to date with the store (other machines' pushes, aliases, deletes,
        gc). Costs one small read when nothing changed; every operation below calls it."""
        report = refresh_module.refresh(self)
        self._refused_refs.update(report.refused)
        return report

    def _lookup(self, model: str, revision: str | None) -> VersionRecord:
        """``index.resolve``; a model whose refs in the store were refused reports why, not
        "not found" (the store may have removed a ref it could not forge). An alias whose ref in
        the store was rolled back is an error, not the target this index knew before."""
        rolled_back = aliasseq_module.rolled_back(self, model, revision) if revision is not None else None
        if rolled_back is not None:
            raise rolled_back
        try:
            return self.index.resolve(model, revision)
        except (ModelNotFoundError, RevisionNotFoundError):
            refused = self._refused_refs.get(model)
            if refused is not None:
                raise refused from None
            raise

    def _refresh_to_read(self) -> None:
        """Refresh before a read; a primary that cannot be reached leaves the index as it is (the
        read goes on with what this machine knew, and replicas may still serve the data)."""
        try:
            self.refresh()
        except StorageError as exc:
            if isinstance(exc, CredentialsError):  # keys or credentials: the user must act
                raise
            logger.warning("could not follow the store's changes (%s); showing what this index knew", exc)

    def _cursor(self) -> int:
        return int(self.index.get_state(refresh_module.CURSOR) or 0)

    def journal_change(self, kind: str, **fields: Any) -> int:
        return self.journal.append(kind, self._cursor(), **fields)

    def journal_pack(self, pack_id: str, size: int) -> None:
        self.journal_change(PACK, id=pack_id, size=size)

    def journal_ref(self, model: str, kind: str, name: str) -> None:
        self.journal_change(REF, model=model, ref=kind, name=name)

    # ---- reading the registry ----------------------------------------------------------------

    def _info(self, rec: VersionRecord, with_files: bool = False) -> VersionInfo:
        files: tuple[FileEntry, ...] = ()
        lineage: tuple[dict[str, Any], ...] = ()
        safety: dict[str, dict[str, Any]] = {}
        if with_files:
            manifest = self._manifest(rec.commit)
            files = tuple(sorted(manifest.files, key=lambda f: f.path))
            lineage = tuple(dict(x) for x in manifest.lineage)
            safety = {k: dict(v) for k, v in manifest.safety.items()}
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
            safety=safety,
        )

    def _manifest(self, commit: str) -> Manifest:
        body = self.index.get_manifest(commit)
        if body is not None:
            return self.store.parse_manifest(commit, body)
        return self.store.get_manifest(commit)

    def _manifest_sealed(self, commit: str) -> bool:
        """Whether the version was pushed encrypted (its manifest is sealed)."""
        body = self.index.get_manifest(commit)
        if body is None:
            body = self.backend.get(layout.manifest_key(commit))
        return is_sealed_manifest(body)

    def _open_sealed_manifest(self, commit: str, data: bytes) -> Manifest:
        """A sealed manifest, opened with the keys of the model it names and checked to be that
        model's (a manifest moved to another model, or to another commit id, fails)."""
        model = sealed_manifest_model(data)
        dom = self.keys.domain(model)
        if dom is None:
            raise IntegrityError(f"manifest {commit} is sealed for model {model}, which has no keys")
        manifest = Manifest.from_bytes(dom.open_manifest(commit, data))
        if manifest.model != model:
            raise IntegrityError(f"manifest {commit} is sealed for {model} but names model {manifest.model}")
        return manifest

    # ---- encryption domains ---------------------------------------------------------------------

    def _reader_for(self, model: str) -> ChunkReader:
        """The chunk reader of ``model``'s domain (the store-wide one for a plain model).

        Opening the domain unwraps its keys, so a wrong or missing key fails here, before
        anything is read or written.
        """
        dom = self.keys.domain(model)
        if dom is None:
            return self.reader
        with self._readers_lock:
            reader = self._readers.get(model)
            if reader is None or reader.codec.domain is not dom:
                codec = BlobCodec(dom, refresh=lambda: self.keys.domain(model, refresh=True))
                reader = self.reader.for_codec(codec)
                self._readers[model] = reader
            return reader

    def _read_checked(self, key: str, check: Callable[[bytes], bool]) -> bytes:
        """An object from the store; with replicas, the first copy that passes ``check``."""
        if self.replicas is not None:
            return self.replicas.read(key, verify=check).data
        return self.backend.get(key)

    def _sealed_recipe_body(self, dom: Domain, name: str) -> bytes | None:
        body = self.index.get_recipe(name)
        if body is not None:
            return body

        def opens(data: bytes) -> bool:
            try:
                dom.open_recipe(name, data)
            except CorruptObjectError:
                return False
            return True

        try:
            return self._read_checked(layout.recipe_key(name), opens)
        except MissingObjectError:
            return None

    def _find_recipe(
        self, sha256: str, model: str | None, *, allow_plain: bool = True
    ) -> tuple[str, FileRecipe]:
        """(name, recipe) of a file of ``model``: its keyed recipe when the model is encrypted and
        has one, else the plain recipe (versions pushed before encryption was turned on). A
        version pushed encrypted (``allow_plain=False``) accepts only its keyed recipe."""
        dom = self.keys.domain(model) if model is not None else None
        if dom is not None:
            name = dom.recipe_name(sha256)
            body = self._sealed_recipe_body(dom, name)
            if body is not None:
                recipe = FileRecipe.from_bytes(dom.open_recipe(name, body))
                if recipe.sha256 != sha256:
                    raise FormatError(f"recipe {name} of {model} names another file")
                return name, recipe
            if not allow_plain:
                raise MissingObjectError(f"the sealed recipe of file {sha256} of {model} is missing")
        body = self.index.get_recipe(sha256)
        if body is not None:
            return sha256, FileRecipe.from_bytes(body)
        try:
            return sha256, self.store.get_recipe(sha256)
        except MissingObjectError:
            raise MissingObjectError(f"recipe for file {sha256} is missing from the store") from None

    def _recipe(self, sha256: str, model: str | None = None, *, allow_plain: bool = True) -> FileRecipe:
        return self._find_recipe(sha256, model, allow_plain=allow_plain)[1]

    def _check_ref(self, model: str, kind: str, name: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """Refuse a ref from the store that is not authentic (encrypted models: its MAC); returns
        the ref as it must be read when that differs (``refauth.check``). A ref refused by the
        domain this process opened earlier is checked once more against the keyring in the
        store (another machine may have moved the model to a new domain since)."""
        dom = self.keys.domain(model)
        try:
            moved = refauth.check(dom, model, kind, name, body)
        except refauth.RefAuthError:
            fresh = self.keys.domain(model, refresh=True)
            if fresh is None or dom is None or fresh.record.generation == dom.record.generation:
                raise
            dom = fresh
            moved = refauth.check(fresh, model, kind, name, body)
        if kind == "alias" and dom is not None:
            aliasseq_module.check(self, model, name, moved or body)
        return moved

    def accept_alias(self, model: str, alias: str) -> VersionInfo | None:
        """Take the store's ref of ``alias`` as it is, even older than one this home has seen (a
        store restored on purpose): forget the alias's pin and read the ref again."""
        check_model_name(model)
        check_label(alias, "alias")
        if aliasseq_module.accept(self, model, alias) is None:
            return None
        return self._info(self.index.resolve(model, alias))

    @staticmethod
    def _signer(dom: Domain | None) -> RefSigner | None:
        if dom is None:
            return None
        return lambda kind, body: refauth.sign(dom, kind, body)

    def adopt_refs(self, model: str, dom: Domain) -> None:
        """A model that just got its keys: authenticate the refs of its existing (plain) versions
        and aliases from this machine's index, so readers accept them and nothing else."""
        try:
            versions = self.index.list_versions(model)
        except WeightvaultError:
            return
        signer = self._signer(dom)
        for rec in versions:
            self.store.create_version_ref(model, rec.label, rec.commit, rec.created, signer, replace=True)
            for alias in rec.aliases:
                self.store.set_alias_ref(
                    model, alias, rec.label, rec.commit, signer, aliasseq_module.next_seq(self, model, alias)
                )

    def chunker_for(self, dom: Domain | None) -> Chunker:
        """The store's chunker for a plain model; one keyed with the domain's secret seed for an
        encrypted one (chunk boundaries then reveal nothing about a known file)."""
        if dom is None:
            return self.chunker
        return Chunker(self.store.config.chunking, seed=dom.chunker_seed)

    def _push_domain(self, model: str) -> Domain | None:
        """The domain a push of ``model`` seals under: its own, or a new one when encryption is on."""
        dom = self.keys.domain(model)
        if dom is None and self.store.has_authenticated_refs(model):
            # no keyring, no pin here, but the store's refs say the model is encrypted
            raise KeyringTrustError(
                f"model {model} is encrypted (its refs are authenticated) but its keyring is missing "
                "from the store; refusing to push it as a plain model or under new keys"
            )
        if dom is None and self.settings.encryption.enabled:
            key_file = self.settings.default_key_file
            existed = key_file.exists()
            dom = self.keys.recheck_new_domain(self.keys.create(model))
            self.adopt_refs(model, dom)
            if not existed and key_file.exists():
                logger.warning(
                    "created the key file %s (mode 0600) that encrypts %s; back it up: without it "
                    "the encrypted models cannot be read",
                    key_file,
                    model,
                )
        return dom

    def model_names(self) -> list[str]:
        """Every model's name, sorted (cheap: no versions are read)."""
        return self.index.list_model_names()

    def list_models(self) -> list[ModelInfo]:
        self._refresh_to_read()
        return [self._model(name) for name in self.index.list_model_names()]

    def model(self, name: str) -> ModelInfo:
        check_model_name(name)
        self._refresh_to_read()
        return self._model(name)

    def _model(self, name: str) -> ModelInfo:
        versions = tuple(self._info(r) for r in self.index.list_versions(name))
        return ModelInfo(name, self.index.model_created(name), versions, self.index.aliases(name))

    def list_versions(self, model: str) -> list[VersionInfo]:
        check_model_name(model)
        self._refresh_to_read()
        return [self._info(r) for r in self.index.list_versions(model)]

    def show(self, ref: str | Ref) -> VersionInfo:
        r = parse_ref(ref) if isinstance(ref, str) else ref
        self._refresh_to_read()
        try:
            return self._info(self._lookup(r.model, r.revision), with_files=True)
        except IntegrityError:
            if not domains_module.follow(self, r.model):
                raise
            return self._info(self._lookup(r.model, r.revision), with_files=True)

    def resolve(self, ref: str | Ref) -> VersionInfo:
        r = parse_ref(ref) if isinstance(ref, str) else ref
        self._refresh_to_read()
        return self._info(self._lookup(r.model, r.revision))

    # ---- push -----------------------------------------------------------------------------------

    def push(
        self,
        model: str,
        source: Path | str | Sequence[SourceFile],
        *,
        version: str | None = None,
        message: str = "",
        metadata: dict[str, str] | None = None,
        lineage: Sequence[dict[str, Any]] = (),
        parent: str | None = None,
        allow_empty: bool = False,
        default_ignores: bool = True,
        base: str | None = None,
        refuse_unsafe: bool = False,
        progress: Progress | None = None,
        on_start: ProgressStart | None = None,
    ) -> PushResult:
        """Store a new version of ``model`` from ``source`` (a folder, a file, or files already
        scanned).

        Files equal to the latest version's make no new version (``unchanged`` in the result,
        which names that version) unless an explicit ``version`` label is asked for. An empty
        source is refused unless ``allow_empty``; VCS and cache folders are skipped unless
        ``default_ignores`` is False (``source.DEFAULT_IGNORES``). ``base`` (MODEL@REV) links the
        version to the one it was fine-tuned from (a PEFT adapter's config does so by itself).
        Malformed safetensors files are refused, and with ``refuse_unsafe`` (or the setting
        ``refuse_unsafe_pickles``) dangerous pickles; nothing is written in either case.
        """
        started = time.perf_counter()
        check_model_name(model)
        if version is not None:
            check_new_name(version)
            self.refresh()
            if self.index.label_exists(model, version):  # before any output (checked again below)
                raise VersionExistsError(f"version {model}@{version} already exists")
        seen_ns = time.time_ns()  # before any stat: the stat cache's "racily clean" rule needs it
        if isinstance(source, Path | str):
            files = scan_source(source, default_ignores=default_ignores)
        else:
            files = list(source)
        if not files and not allow_empty:
            raise InvalidInputError(
                f"source {source} has no files to push"
                + (" (VCS and cache folders are skipped)" if default_ignores else "")
                + "; use --allow-empty (allow_empty=True) to make an empty version"
            )
        safety = safety_module.inspect_files(files, refuse_unsafe or self.settings.refuse_unsafe_pickles)
        lineage = [*lineage, *lineage_module.base_edges(self, files, base)]
        had_domain = self.keys.domain(model) is not None
        dom = self._push_domain(model)  # keys first: a key problem stops the push before any write
        if on_start:
            on_start(sum(f.size for f in files))
        # The shared lock keeps a gc from deleting anything between our dedup probes and our
        # commit (docs/format.md, "Locks and online gc").
        with holding(
            self.primary,
            SHARED,
            stale_seconds=self.settings.lock_stale_seconds,
            wait_seconds=self.settings.lock_wait_seconds,
        ):
            self.refresh()
            if version is not None and self.index.label_exists(model, version):
                raise VersionExistsError(f"version {model}@{version} already exists")
            if parent is None:
                with contextlib.suppress(Exception):
                    parent = self.index.resolve(model, None).commit
            new = _NewVersion(model, parent, message, dict(metadata or {}), tuple(lineage), safety)
            check_same = version is None and (dom is None or had_domain)
            for _attempt in range(3):
                staged = self._push_data(new, files, dom, progress, check_same, seen_ns)
                if staged.same is not None:
                    return PushResult(
                        version=staged.same,
                        bytes_read=staged.pipeline.bytes_read,
                        bytes_written=staged.sink.bytes_written,
                        chunks_total=staged.pipeline.chunks_total,
                        chunks_new=staged.pipeline.chunks_new,
                        seconds=time.perf_counter() - started,
                        unchanged=True,
                    )
                missing = [p for p in staged.packs if not self.primary.exists(layout.pack_key(p))]
                if not missing:
                    break
                self.index.drop_packs(missing)  # the store lost them: write their chunks again
            else:
                raise ConcurrentModificationError(
                    f"packs this version needs keep disappearing from the store ({missing[0]}, …)"
                )
            if dom is not None:
                self._check_slot_held(model, staged.slot)
            created = datetime.now(UTC)
            label = self._create_ref(model, version, staged.commit, created, self._signer(dom))
            self.journal_ref(model, "version", label)
            try:
                rec = self.index.add_version(
                    model=model,
                    label=label,
                    commit=staged.commit,
                    parent=parent,
                    created=created,
                    message=message,
                    metadata=dict(metadata or {}),
                    total_size=staged.manifest.total_size,
                    file_count=len(files),
                    manifest=staged.body,
                    required_packs=staged.packs,
                    required_recipes=set(staged.recipe_names),
                )
            except BaseException:
                self.primary.delete(layout.version_ref_key(model, label))
                self.journal_ref(model, "version", label)
                raise
        replication = self._replicate_version(rec)
        return PushResult(
            version=self._info(rec),
            bytes_read=staged.pipeline.bytes_read,
            bytes_written=staged.sink.bytes_written,
            chunks_total=staged.pipeline.chunks_total,
            chunks_new=staged.pipeline.chunks_new,
            seconds=time.perf_counter() - started,
            replication=replication,
        )

    def _push_data(
        self,
        new: _NewVersion,
        files: list[SourceFile],
        dom: Domain | None,
        progress: Progress | None,
        check_same: bool,
        seen_ns: int,
    ) -> _Staged:
        """Write what the store lacks of a push (packs, recipes, manifest); nothing is visible yet.
        With ``check_same``, files (and lineage) equal to the latest version's stop here (``same``)."""
        sink = PackSink(
            self.backend,
            self.index,
            default_temp_factory(self.backend, self.settings.home / "tmp"),
            self.settings.pack_size,
            on_sealed=self.journal_pack,
        )
        encoder: BlobEncoder | None = None
        slot = dom.active_slot if dom is not None else 0
        if dom is not None or self.settings.compression != "none":
            encoder = BlobEncoder(self.settings.compression, dom.ciphers[slot] if dom else None, slot)
        pipeline = PushPipeline(
            self.index,
            sink,
            self.chunker_for(dom),
            self.settings.workers,
            progress,
            encoder=encoder,
            chunk_id_fn=dom.chunk_id if dom is not None else chunk_id,
            usable_slots=dom.slots if dom is not None else None,
            encode_threads=self._encode_threads(files),
        )
        # the stat cache serves plain models only: an encrypted model's chunk ids and cut points
        # depend on its keys, which a machine-local table should not have to track
        scheme = f"plain:{self.store.config.store_id}:{self.chunker.params}" if dom is None else None
        cached = self.stat_cache.lookup(files, scheme) if scheme else {}
        try:
            recipes = pipeline.run(files, cached)
        finally:
            self.index.release_probes()
        if scheme:
            self.stat_cache.record(
                ((f, r, seen_ns) for f, r in zip(files, recipes, strict=True) if f.abspath not in cached),
                scheme,
            )
        entries = tuple(FileEntry(f.path, r.size, r.sha256) for f, r in zip(files, recipes, strict=True))
        manifest = Manifest(
            model=new.model,
            files=entries,
            parent=new.parent,
            message=new.message,
            metadata=dict(new.metadata),
            lineage=new.lineage,
            safety=new.safety,
        )
        if check_same and new.parent is not None:
            same = self._same_files(new.model, new.parent, entries)
            if same is not None and [dict(x) for x in self._manifest(same.commit).lineage] == [
                dict(x) for x in new.lineage
            ]:  # new lineage (another base, another upstream commit) is a new version
                return _Staged(pipeline, sink, slot, [], manifest, new.parent, b"", set(), same)
        recipe_names = self._put_recipes(recipes, dom)
        commit, body = self.store.put_manifest(manifest, dom)
        all_chunks = {cid for r in recipes for cid, _ in r.chunks}
        packs = self.index.pack_ids_for_chunks(all_chunks)
        return _Staged(pipeline, sink, slot, recipe_names, manifest, commit, body, packs)

    def _put_recipes(self, recipes: Sequence[FileRecipe], dom: Domain | None) -> list[str]:
        """Write the recipe objects of a push, many in flight (each is its own durable object:
        one at a time, a 10,000-file push waited on 10,000 fsyncs or requests in a row), then
        index them in one transaction. Returns their names, in order."""
        objects: dict[str, tuple[int, bytes]] = {}
        names: list[str] = []
        for recipe in recipes:
            if dom is None:
                name, body = recipe.sha256, recipe.to_bytes()
            else:
                name = dom.recipe_name(recipe.sha256)
                body = objects[name][1] if name in objects else dom.seal_recipe(name, recipe.to_bytes())
            objects[name] = (recipe.size, body)
            names.append(name)
        if len(objects) <= 1:
            for name, (_size, body) in objects.items():
                self.store.put_recipe_object(name, body)
        else:
            with ThreadPoolExecutor(min(16, len(objects)), thread_name_prefix="wv-recipes") as pool:
                for fut in [
                    pool.submit(self.store.put_recipe_object, n, b) for n, (_s, b) in objects.items()
                ]:
                    fut.result()
        self.index.put_recipes([(n, size, body) for n, (size, body) in objects.items()])
        return names

    def _same_files(self, model: str, commit: str, entries: Sequence[FileEntry]) -> VersionInfo | None:
        """The latest version of ``model`` when it is ``commit`` and holds exactly ``entries``."""
        try:
            latest = self.index.resolve(model, None)
        except WeightvaultError:
            return None
        if latest.commit != commit:
            return None
        theirs = {(f.path, f.size, f.sha256) for f in self._manifest(latest.commit).files}
        if theirs != {(f.path, f.size, f.sha256) for f in entries}:
            return None
        return self._info(latest)

    def _encode_threads(self, files: Sequence[Any]) -> int:
        """Threads of the push's encode stage: only when compressing, and only when one file is more
        than a worker's share of the push (else per-file threads already keep every core busy and the
        stage would only add a copy per chunk)."""
        if self.settings.compression == "none" or not files:
            return 0
        sizes = [f.size for f in files]
        return self.settings.workers if max(sizes) * self.settings.workers > sum(sizes) else 0

    def _check_slot_held(self, model: str, slot: int) -> None:
        """A re-encryption may have dropped the data key this push sealed under: then push again."""
        rec = self.keys.record(model)
        if rec is None or slot not in {s.slot for s in rec.slots}:
            self.keys.forget(model)  # the next attempt opens the keyring as it is now
            raise ConcurrentModificationError(
                f"the data keys of {model} were rotated during the push; push again (only what is "
                "missing is written)"
            )

    def _replicate_version(self, rec: VersionRecord) -> dict[str, str]:
        if self.replicas is None or not self.settings.sync_enabled:
            return {}
        keys = self.version_keys(rec)
        if self.settings.replication == "inline":
            return replication_module.replicate(self, self.replicas, keys)
        replicas = self.replicas
        thread = threading.Thread(
            target=replication_module.replicate, args=(self, replicas, keys), name="wv-replicate", daemon=True
        )
        thread.start()
        self._background.append(thread)
        return {n: "background" for n in replicas.names if n != replicas.primary_name}

    def _create_ref(
        self, model: str, version: str | None, commit: str, created: datetime, signer: RefSigner | None
    ) -> str:
        if version is not None:
            try:
                self.store.create_version_ref(model, version, commit, created, signer)
            except ObjectExistsError:
                raise VersionExistsError(f"version {model}@{version} already exists in the store") from None
            return version
        base = timestamp_label(created)
        for n in range(1000):
            label = base if n == 0 else f"{base}-{n}"
            if self.index.label_exists(model, label):
                continue
            try:
                self.store.create_version_ref(model, label, commit, created, signer)
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
        link_mode: str | None = None,
    ) -> PullResult:
        """``link_mode`` (default: the setting) says how cached files are placed: see ``placement``."""
        started = time.perf_counter()
        mode = check_link_mode(link_mode or self.settings.link_mode)
        if provider is not None:
            if self.replicas is None:
                if provider != self.settings.storage_type:
                    raise ConfigError(
                        f"no replica named {provider!r}: this vault has only {self.settings.storage_type!r}"
                    )
            else:
                self.replicas.backend(provider)  # unknown names are a clear error
        if self.replicas is not None:
            self.replicas.drain_failures()
        info = self.show(ref)
        reader = self._reader_for(info.model)  # opens the keys before anything is written
        reader.prefer = provider
        model = info.model
        dest_path = Path(dest).absolute()
        files = select_files(info.files, include, exclude)
        unmatched = tuple(
            p for p in include or () if not any(fnmatch.fnmatchcase(f.path, p) for f in info.files)
        )
        planned = plan(dest_path, files, force, self.cache)
        placer = Placer(
            mode, self.settings.link_fallback, self.cache, dest_path, private=self._cache_private(model)
        )
        placer.check()
        if on_start:
            on_start(sum(p.entry.size for p in planned))
        allow_plain = not self._manifest_sealed(info.commit)
        plain = self.keys.domain(model) is None

        def place() -> Any:
            # recipes and chunk locations of the files to build, each in one pass over the index
            # (per file, a 10,000-file pull spent most of its CPU in queries)
            bodies = self.index.get_recipes([p.entry.sha256 for p in planned]) if plain else {}
            known = {sha: FileRecipe.from_bytes(body) for sha, body in bodies.items()}

            def recipe_for(sha: str) -> FileRecipe:
                found = known.get(sha)
                return found if found is not None else self._recipe(sha, model, allow_plain=allow_plain)

            chunk_ids = [cid for r in known.values() for cid, _n in r.chunks]
            return materialise(
                dest_path if files else None,  # an empty selection creates nothing
                planned,
                recipe_for,
                reader.with_locations(chunk_ids) if chunk_ids else reader,
                self.cache,
                self.settings.workers,
                progress or (lambda n: None),
                placer,
            )

        try:
            counters = place()
        except MissingObjectError:
            # another machine's gc may have repacked what our index located: follow the store
            # and try once more
            if not self.refresh().applied:
                raise
            planned = plan(dest_path, files, force, self.cache)
            counters = place()
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
            unmatched_includes=unmatched,
            link_mode=mode,
            placement=dict(placer.counts),
        )

    # ---- streaming and chunk uploads (the server's transport works through these) --------------

    def open_file(self, ref: str | Ref, path: str, *, info: VersionInfo | None = None) -> FileStream:
        """One file of a version, readable as verified bytes from any offset (``info``: the
        version, when the caller has just shown it)."""
        from weightvault.vault.stream import FileStream

        check_relative_path(path)
        if info is None:
            info = self.show(ref)
        entry = next((f for f in info.files if f.path == path), None)
        if entry is None:
            raise NotFoundError(f"{info.model}@{info.label} has no file {path!r}")
        recipe = self._recipe(entry.sha256, info.model)
        return FileStream(entry, recipe, self._reader_for(info.model), f"{info.model}/{path}")

    def missing_chunks(self, model: str, ids: Sequence[bytes]) -> list[bytes]:
        from weightvault.vault import ingest

        return ingest.missing_chunks(self, model, ids)

    def put_chunks(
        self, model: str, chunks: Iterable[tuple[bytes, bytes | memoryview]]
    ) -> ingest_types.ChunkBatchResult:
        from weightvault.vault import ingest

        return ingest.put_chunks(self, model, chunks, self.chunker.params.max_size)

    def file_recipe(self, model: str, sha256: str) -> FileRecipe:
        """How a file of ``model`` is rebuilt from chunks (to name it again in an uploaded version)."""
        return self._recipe(sha256, model)

    def file_present(self, sha256: str) -> bool:
        """Whether a file stored by ``put_file`` (or any plain push) is whole in the vault."""
        from weightvault.vault import ingest

        return ingest.file_present(self, sha256)

    def put_file(self, model: str, pieces: Iterable[bytes], sha256: str, size: int) -> FileRecipe:
        """Store a whole file sent as a byte stream, checked against ``sha256`` (see ``vault.ingest``)."""
        from weightvault.vault import ingest

        return ingest.put_file(self, model, pieces, sha256, size)

    def commit_upload(
        self, model: str, files: Sequence[ingest_types.UploadedFile], **kwargs: Any
    ) -> PushResult:
        """A version of files whose chunks were sent with ``put_chunks`` (see ``vault.ingest``)."""
        from weightvault.vault import ingest

        return ingest.commit(self, model, files, **kwargs)

    def _cache_private(self, model: str) -> bool:
        """Whether ``model``'s pulled plaintext must be cached for this user only: it is encrypted."""
        return self.keys.domain(model) is not None

    # ---- changing names -------------------------------------------------------------------------

    def delete(self, ref: str | Ref, *, primary_only: bool = False) -> VersionInfo:
        """Remove a version's label and its aliases (from every replica unless ``primary_only``);
        its data goes at the next ``gc``. The version is named by label or commit id: an alias is
        refused, as it only borrows the version. The result lists the aliases deleted with it."""
        r = parse_ref(ref) if isinstance(ref, str) else ref
        if r.revision is None:
            raise InvalidInputError(f"say which version of {r.model} to delete (MODEL@VERSION)")
        self.refresh()
        rec = self.index.resolve(r.model, r.revision)
        if r.revision in rec.aliases and r.revision != rec.label:
            # deleting through an alias would also take every other alias of that version
            raise InvalidInputError(
                f"{r.model}@{r.revision} is an alias of {r.model}@{rec.label} (commit {rec.commit}); "
                f"to remove the alias: weightvault alias rm {r.model} {r.revision}; to delete the "
                f"version: weightvault rm {r.model}@{rec.label}"
            )
        target = self.primary if primary_only else self.backend
        for alias in rec.aliases:
            target.delete(layout.alias_ref_key(r.model, alias))
            self.journal_ref(r.model, "alias", alias)
        target.delete(layout.version_ref_key(r.model, rec.label))
        self.journal_ref(r.model, "version", rec.label)
        self.index.delete_version(r.model, rec.label)
        return self._info(rec)

    def set_alias(self, model: str, alias: str, revision: str) -> VersionInfo:
        check_model_name(model)
        check_new_name(alias, "alias")
        self.refresh()
        rec = self.index.resolve(model, revision)
        if self.index.label_exists(model, alias):
            raise ConflictError(f"{alias!r} is a version label of {model}; an alias cannot shadow it")
        # the keyring as it is now: a ref signed with a domain replaced meanwhile would be refused
        dom = self.keys.domain(model, refresh=True)
        seq = aliasseq_module.next_seq(self, model, alias) if dom is not None else None
        self.store.set_alias_ref(model, alias, rec.label, rec.commit, self._signer(dom), seq)
        if seq is not None:
            aliasseq_module.pin_written(self, model, alias, seq)
        self.journal_ref(model, "alias", alias)
        if self.replicas is not None and self.settings.sync_enabled:  # aliases move: refresh them everywhere
            replication_module.replicate(self, self.replicas, [layout.alias_ref_key(model, alias)])
        self.index.set_alias(model, alias, rec.label)
        return self._info(self.index.resolve(model, rec.label))

    def remove_alias(self, model: str, alias: str) -> None:
        check_model_name(model)
        check_label(alias, "alias")
        self.refresh()
        if alias not in self.index.aliases(model):
            raise RevisionNotFoundError(f"alias {alias!r} of model {model!r} not found")
        self.store.delete_alias_ref(model, alias)
        self.journal_ref(model, "alias", alias)
        self.index.remove_alias(model, alias)

    # ---- maintenance ----------------------------------------------------------------------------

    def verify(
        self, ref: str | Ref | None = None, *, read_data: bool = False, progress: Progress | None = None
    ) -> VerifyReport:
        return verify_module.verify(self, ref, read_data=read_data, progress=progress)

    def gc(
        self, *, grace_seconds: float | None = None, dry_run: bool = False, force: bool = False
    ) -> GcReport:
        """Delete what no ref in the store reaches and repack sparse packs (``vault.gc``); with
        ``dry_run`` only report it; ``force`` deletes even while some objects cannot be parsed."""
        grace = self.settings.gc_grace_seconds if grace_seconds is None else grace_seconds
        return gc_module.collect(self, grace, dry_run=dry_run, force=force)

    def gc_status(self) -> dict[str, Any]:
        """What gc would work on: index totals and the packs condemned and waiting out the grace period."""
        out = self.index.stats()
        condemned = [p for p in self.index.packs() if p.condemned is not None]
        out["condemned_packs"] = len(condemned)
        out["condemned_bytes"] = sum(p.size for p in condemned)
        out["grace_seconds"] = self.settings.gc_grace_seconds
        return out

    def recover(self) -> RecoverReport:
        """Rebuild the index from the store (built aside, swapped in when complete); what could not
        be read is named in the report."""
        return recover_module.rebuild_index(self)

    # ---- formats and lineage --------------------------------------------------------------------

    def tensors(self, ref: str | Ref, path: str | None = None) -> list[tensors_module.TensorListing]:
        """The tensors of the version's safetensors files (or of ``path``), from their headers alone."""
        return tensors_module.list_tensors(self, ref, path)

    def lineage(self, ref: str | Ref) -> lineage_module.LineageReport:
        """What the version came from and what builds on it."""
        return lineage_module.lineage(self, ref)

    def pull_with_base(
        self, ref: str | Ref, dest: Path | str, base_dest: Path | str | None = None, **options: Any
    ) -> tuple[tuple[PullResult, Path], tuple[PullResult, Path]]:
        """Pull the version into ``dest`` and its base model into ``base_dest`` (default ``dest/base``)."""
        return lineage_module.pull_with_base(self, ref, dest, base_dest, **options)

    # ---- replicas -------------------------------------------------------------------------------

    def _replica_set(self) -> ReplicaSet:
        if self.replicas is None:
            raise ConfigError("this vault has a single store; configure replicas to sync or repair")
        return self.replicas

    def sync(self, progress: Progress | None = None) -> replication_module.SyncReport:
        """Copy to every secondary whatever the primary has and it lacks (keyrings first: they are
        replaced by rotation, so a secondary's copy is refreshed when it differs)."""
        replicas = self._replica_set()
        keyrings = self._sync_keyrings(replicas)
        report = replication_module.sync(self, replicas, progress)
        for name, (copied, errors) in keyrings.items():
            report.copied[name] = report.copied.get(name, 0) + copied
            report.errors.setdefault(name, []).extend(errors)
        return report

    def _sync_keyrings(self, replicas: ReplicaSet) -> dict[str, tuple[int, list[str]]]:
        primary = replicas.backend(replicas.primary_name)
        wanted = {i.key: primary.get(i.key) for i in primary.list(KEYS) if parse_keyring_key(i.key)}
        out: dict[str, tuple[int, list[str]]] = {}
        for name in replicas.names:
            if name == replicas.primary_name:
                continue
            dst = replicas.backend(name)
            copied, errors = 0, []
            for key, body in wanted.items():
                try:
                    try:
                        same = dst.get(key) == body
                    except MissingObjectError:
                        same = False
                    if not same:
                        dst.put(key, body)
                        copied += 1
                except StorageError as exc:
                    errors.append(f"{key}: {exc}")
            out[name] = (copied, errors)
        return out

    def repair(self, progress: Progress | None = None) -> replication_module.RepairReport:
        """Re-read every object of every version on every replica; rewrite bad copies from good ones."""
        return replication_module.repair(self, self._replica_set(), progress)

    def replica_status(self, ref: str | Ref) -> dict[str, bool | str]:
        """Per replica: whether the version is complete there."""
        r = parse_ref(ref) if isinstance(ref, str) else ref
        rec = self.index.resolve(r.model, r.revision)
        if self.replicas is None:
            return {self.settings.storage_type: True}
        keys = self.version_keys(rec)
        out: dict[str, bool | str] = {}
        for name in self.replicas.names:
            try:
                out[name] = not self.replicas.missing_on(name, keys)
            except StorageError as exc:
                out[name] = f"unreachable: {exc}"
        return out

    def version_keys(self, rec: VersionRecord) -> list[str]:
        """Every object a version needs, data first and the ref last (a replica then shows it only
        when complete); an encrypted model's keyring comes first."""
        manifest = self._manifest(rec.commit)
        found = {sha: self._find_recipe(sha, rec.model) for sha in {f.sha256 for f in manifest.files}}
        chunk_ids = {cid for _, recipe in found.values() for cid, _ in recipe.chunks}
        packs = sorted(self.index.pack_ids_for_chunks(chunk_ids))
        keys = [keyring_key(rec.model)] if self.keys.has_keyring(rec.model) else []
        keys += [layout.pack_key(p) for p in packs] + [layout.index_key(p) for p in packs]
        keys += [layout.recipe_key(name) for name in sorted({n for n, _ in found.values()})]
        keys += [layout.manifest_key(rec.commit), layout.version_ref_key(rec.model, rec.label)]
        keys += [layout.alias_ref_key(rec.model, a) for a in rec.aliases]
        return keys

    def object_ok(self, key: str, data: bytes) -> bool:
        """Whether ``data`` is a good copy of the store object ``key`` (for repair): packs and
        sealed recipes are opened with the keys of the model they belong to."""
        name = layout.name_from_key(key)
        try:
            if key.startswith(layout.PACKS):
                return self._pack_ok(data)
            if key.startswith(layout.INDEX):
                decode_table(data)
                return True
            if key.startswith(layout.MANIFESTS):
                self.store.parse_manifest(name, data)
                return True
            if key.startswith(layout.RECIPES):
                if data.startswith(b"{"):
                    return FileRecipe.from_bytes(data).sha256 == name
                for dom in self._domains():
                    try:
                        dom.open_recipe(name, data)
                        return True
                    except CorruptObjectError:
                        continue
                return False
            if key.startswith(KEYS) and (model := parse_keyring_key(key)) is not None:
                opened = self.keys.domain(model)
                rec = KeyringRecord.from_bytes(data, model)
                if opened is not None:
                    rec.check_mac(opened.mac_key)
                return True
        except (IntegrityError, ValueError):
            return False
        return True

    def _domains(self) -> list[Domain]:
        return [d for m in self.keys.models() if (d := self.keys.domain(m)) is not None]

    def _pack_ok(self, data: bytes) -> bool:
        entries = decode_table(data)
        mv = memoryview(data)
        codecs = [BlobCodec()]
        if any(e.codec & 0x80 for e in entries):  # find the model whose keys open it
            codecs = [BlobCodec(d) for d in self._domains()]
        for codec in codecs:
            try:
                for e in entries:
                    blob = mv[e.offset : e.offset + e.stored_len]
                    raw = codec.decode(e.codec, blob, e.raw_len, e.chunk_id, e.key_slot)
                    if len(raw) != e.raw_len or codec.chunk_id_for(e.codec)(raw) != e.chunk_id:
                        return False
                return True
            except WeightvaultError:
                continue
        return False

    # ---- keys -----------------------------------------------------------------------------------

    def init_keys(self) -> dict[str, Any]:
        """Make sure the configured key provider works: create its local key file (0600) if it
        has none, and wrap and unwrap a throwaway key with it."""
        from weightvault.cas.encryption import DataKey
        from weightvault.keys import unwrap_data_key, wrap_data_key

        config = self.keys.configured_config()
        path = config.get("path") if config.get("type") == "local_file" else None
        existed = path is not None and Path(str(path)).expanduser().exists()
        provider = self.keys.configured(create_key_file=True)
        probe = DataKey.generate()
        unwrap_data_key(provider, wrap_data_key(provider, probe))
        return {
            "provider": provider_params(provider, config),
            "kek_id": provider.key_id,
            "created_key_file": str(path) if path is not None and not existed else None,
            "encryption_enabled": self.settings.encryption.enabled,
        }

    def key_status(self, model: str | None = None) -> dict[str, Any]:
        """Which key protects what: per model, its provider and KEK, its data keys by slot and
        how much live data each seals (slot 0: plain chunks of versions from before encryption)."""
        from weightvault.vault.rotation import live_slots

        indexed = set(self.index.list_model_names())
        if model is not None:
            check_model_name(model)
            names = [model]
        else:
            names = sorted(indexed | set(self.keys.models()))
        out: list[dict[str, Any]] = []
        for m in names:
            rec = self.keys.record(m)
            entry: dict[str, Any] = {"model": m, "encrypted": rec is not None}
            if rec is not None:
                entry.update(
                    provider=dict(rec.provider),
                    kek_id=rec.kek_id,
                    id_key=rec.id_key.key_id,
                    reencrypt_in_progress=rec.reencrypt_target,
                    new_domain_in_progress=rec.next_domain is not None,
                    replaced_id_keys=list(rec.replaces),
                    data_keys=[
                        {"slot": sl.slot, "key_id": sl.key.key_id, "state": sl.state, "created": sl.created}
                        for sl in sorted(rec.slots, key=lambda x: x.slot)
                    ],
                )
            try:
                usage = live_slots(self, m) if m in indexed else {}
            except WeightvaultError as exc:
                entry["usage_error"] = str(exc)
            else:
                entry["live"] = {str(sl): {"chunks": n, "bytes": b} for sl, (n, b) in sorted(usage.items())}
            out.append(entry)
        configured: dict[str, Any] = dict(self.keys.configured_config())
        configured.pop("passphrase", None)
        return {
            "encryption_enabled": self.settings.encryption.enabled,
            "configured_provider": configured,
            "models": out,
        }

    def rotate_keys(
        self,
        model: str | None = None,
        *,
        reencrypt: bool = False,
        new_provider: dict[str, Any] | None = None,
        progress: Progress | None = None,
    ) -> RotateReport:
        """Re-wrap the keys of ``model`` (every encrypted model when None) under a new KEK; with
        ``reencrypt`` also rewrite their data under new data keys (see ``vault.rotation``)."""
        from weightvault.vault.rotation import rotate

        return rotate(self, model, reencrypt=reencrypt, new_provider=new_provider, progress=progress)

    def rotate_domain(self, model: str, *, progress: Progress | None = None) -> NewDomainReport:
        """Move ``model`` to a new encryption domain: new id key, MAC keys, chunker seed and data
        key; every version re-chunked and re-sealed, every ref re-signed (``vault.domains``).
        For when a key holder leaves; rerun to finish an interrupted one."""
        from weightvault.vault.domains import rotate_domain

        return rotate_domain(self, model, progress)

    def stats(self) -> dict[str, Any]:
        out = self.index.stats()
        out["store_bytes"] = sum(o.size for o in self.backend.list(""))
        out["store_url"] = self.backend.url
        if self.cache is not None:
            out["cache_bytes"] = self.cache.total_bytes()
            out["cache_max_bytes"] = self.cache.max_bytes
        return out
