"""A push into a local store without the vault stack: of a plain model, or of an encrypted one
whose keys ``vault.lightkeys`` opens as the full path would.

``Vault.open`` loads pydantic settings, the storage backends, the key manager and SQLAlchemy's
ORM before a push reads a byte: about 0.3 s of a CLI push's start-up, on one core, while a
1 GiB push's own work takes about a second. For the commonest push (a plain model, a local
store, the embedded SQLite index, a home that is new or whose index applied every journal
entry), this module does what ``Vault.push`` does with the same code: ``scan_source``, the
safety checks (``safety``), the stat cache (``statcache``), ``PushPipeline`` with ``PackSink``
(packs durable, then their index objects, index rows and journal entries), the recipe batch
(``pushrecipes``), the manifest (``Store.put_manifest``), the version ref and its
journal entry, the version's index row, and the journal entries followed into the index. Only
the index is reached through ``registry.lightindex`` (the standard library's sqlite3) instead of
``RegistryIndex``, and the settings are read by ``vault.fastopen``'s strict rules.

Anything else raises ``SnapshotUnavailable`` before the push writes anything, and the caller
takes the full path, which reports any error: a name or label the full path would refuse, a
source that cannot be scanned or is empty, a version label that exists, a version without a
label of a model that has versions (the full path compares it with the latest), a PEFT adapter
(its base is resolved into lineage), a config key or environment variable ``fastopen`` does not
accept, an index that has not applied every journal entry, a store or index that exists without
the other. A new home is created as ``VaultState`` creates it (home, store folder and config,
index at head, cache folders) before the checks that need it (the safety checks, the store lock
and the journal): a decline after that leaves what the full path's own opening would have made.

Encryption (docs/format.md, "Write order", step 0): a model with a keyring in the store is pushed
here only when ``lightkeys.open_push_keys`` opens its keys (local key files this home trusts, the
keyring this home pinned, no rotation half done), before anything is written; the push then
seals as ``Vault.push`` does, with the same code: the domain's keyed chunk ids and chunker seed,
``BlobEncoder`` sealing under the active slot, sealed recipes named by keyed hash, the sealed
manifest under its keyed commit id, the ref's MAC (``refauth.sign``), and the keyring re-read
before the commit (``KeyManager.check_slot_held``). Any other trace of encryption declines: a
model without a keyring in a home with keys or an ``encryption`` setting (the full path may
create its keyring, or refuse it), a new home with either, a plain model whose refs carry a MAC.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from weightvault.core import layout
from weightvault.core.manifest import FileEntry, FileRecipe, Manifest
from weightvault.core.names import check_model_name, check_new_name
from weightvault.core.types import PushResult, VersionInfo
from weightvault.registry.lostdata import PACK_ATTEMPTS, packs_keep_disappearing
from weightvault.registry.snapshot import SnapshotUnavailable
from weightvault.vault.fastopen import (
    CURSOR,
    HARMLESS_ENV,
    PULL_ENV,
    PULL_KEYS,
    SAFE_KEYS,
    STORE_ID,
    _config,
    _local_store,
    _store_id,
    read_config,
)
from weightvault.vault.newref import create_version_ref, taken_back_on_failure
from weightvault.vault.pushrecipes import put_push_recipes

if TYPE_CHECKING:
    from weightvault.registry.lightindex import LightIndex
    from weightvault.storage.local import LocalBackend
    from weightvault.vault.earlyhash import EarlyHashes
    from weightvault.vault.journal import Journal
    from weightvault.vault.keyring import Domain, KeyManager
    from weightvault.vault.source import SourceFile
    from weightvault.vault.statcache import StatCache
    from weightvault.vault.store import RefSigner, Store

Progress = Callable[[int], None]
#: ``load_settings``'s variable naming a config file (used instead of the home's)
CONFIG_ENV = "WEIGHTVAULT_CONFIG"

#: ``Settings`` defaults of what a push reads (a test keeps them equal)
DEFAULTS: dict[str, Any] = {
    "workers": 2,
    "pack_size_mb": 64,
    "compression": "none",
    "refuse_unsafe_pickles": False,
    "lock_stale_seconds": 1800.0,
    "lock_wait_seconds": 900.0,
}


@dataclass(frozen=True, slots=True)
class PushHome:
    """A home as a push sees it: where it is, its store folder and its config's settings."""

    home: Path
    store: Path
    settings: dict[str, Any]
    #: nothing of it exists yet: the push creates it (``VaultState``'s way)
    fresh: bool

    def setting(self, key: str) -> Any:
        return self.settings.get(key, DEFAULTS[key])


def find_home(home: str | None, config_file: str | None = None, cache_dir: str | None = None) -> PushHome:
    """The home a push goes to, when this module can serve it (else ``SnapshotUnavailable``):
    ``home``, ``config_file`` and ``cache_dir`` as the command line's ``--home``, ``--config`` and
    ``--cache-dir`` give them, layered with the environment as ``load_settings`` layers them."""
    env = os.environ
    accepted = HARMLESS_ENV | set(PULL_ENV) | {CONFIG_ENV}
    unknown = sorted(k for k in env if k.startswith("WEIGHTVAULT_") and k not in accepted)
    if unknown:
        raise SnapshotUnavailable(f"environment {unknown[0]} needs the full settings")
    home_path = Path(home or env.get("WEIGHTVAULT_HOME") or "~/.weightvault").expanduser().absolute()
    cfg = config_file or env.get(CONFIG_ENV)
    if cfg:
        cfg_path = Path(cfg).expanduser()
        if not cfg_path.is_file():
            raise SnapshotUnavailable(f"no config file {cfg_path}: the full path reports it")
        config = read_config(cfg_path, PULL_KEYS)  # the encryption section: local key files only
    else:
        config = _config(home_path, PULL_KEYS)
    for var, key in PULL_ENV.items():  # where the cache is: the only thing they change for a push
        if (value := env.get(var)) is not None:
            if not value or not SAFE_KEYS[key](value):
                raise SnapshotUnavailable(f"environment {var} needs the full settings")
            config[key] = value
    if cache_dir is not None:  # ``cli.state``: taken from the working folder, not the home
        config["cache_directory"] = str(Path(cache_dir).expanduser().absolute())
    url = env.get("WEIGHTVAULT_STORE_URL", config.get("store_url"))
    root = _local_store(url) if url else home_path / "store"
    has_index = os.path.lexists(home_path / "index.db")
    has_store = os.path.lexists(root / layout.CONFIG_KEY)
    if has_index and has_store:
        return PushHome(home_path, root, config, fresh=False)
    if has_index or has_store or _has_entries(root):
        raise SnapshotUnavailable("a store or an index without the other: the full path reconciles them")
    if os.path.lexists(home_path / "keys") or "encryption" in config:
        raise SnapshotUnavailable("a new home with keys or encryption settings: the full path opens them")
    return PushHome(home_path, root, config, fresh=True)


def _has_entries(folder: Path) -> bool:
    try:
        with os.scandir(folder) as it:
            return any(True for _ in it)
    except FileNotFoundError:
        return False
    except OSError:
        return True  # not a folder we can read: the full path reports it


@dataclass
class _Open:
    """What a push needs of an open home (``VaultState``'s parts, without keys or replicas)."""

    where: PushHome
    backend: LocalBackend
    store: Store
    journal: Journal
    index: LightIndex
    stat_cache: StatCache
    #: an encrypted model's domain and the key manager that opened it (``lightkeys``), else None
    keys: tuple[Domain, KeyManager] | None = None

    @property
    def domain(self) -> Domain | None:
        return None if self.keys is None else self.keys[0]

    def close(self) -> None:
        self.stat_cache.close()
        self.index.close()
        self.backend.close()

    def cursor(self) -> int:
        return int(self.index.get_state(CURSOR) or 0)

    def journal_pack(self, pack_id: str, size: int) -> None:
        from weightvault.vault.journal import PACK

        self.journal.append(PACK, self.cursor(), id=pack_id, size=size)

    def journal_ref(self, model: str, kind: str, name: str) -> None:
        from weightvault.vault.journal import REF

        self.journal.append(REF, self.cursor(), model=model, ref=kind, name=name)

    def check_current(self) -> None:
        """The index applied every journal entry and mirrors this store (a refresh would do
        nothing), else ``SnapshotUnavailable``."""
        cursor = self.index.get_state(CURSOR)
        if (
            cursor is None
            or not cursor.isdigit()
            or self.index.get_state(STORE_ID) != self.store.config.store_id
        ):
            raise SnapshotUnavailable("the index has not followed this store yet")
        if self.journal.read(int(cursor) + 1) is not None:
            raise SnapshotUnavailable("the store's journal has changes this index has not applied")


def _open(where: PushHome, keys: tuple[Domain, KeyManager] | None) -> _Open:
    """The home's parts, created in ``VaultState``'s order when it is new."""
    from weightvault.registry.lightindex import LightIndex
    from weightvault.storage import oscaps
    from weightvault.storage.local import LocalBackend
    from weightvault.vault.journal import Journal
    from weightvault.vault.statcache import StatCache
    from weightvault.vault.store import Store

    oscaps.check_platform()
    if where.fresh:
        from weightvault.vault.home import make_home

        make_home(where.home)
    backend = LocalBackend(where.store)
    try:
        store = Store(backend)
        journal = Journal(backend)
        index = LightIndex(where.home / "index.db", create=where.fresh)
    except BaseException:
        backend.close()
        raise
    _open_cache(where)
    return _Open(where, backend, store, journal, index, StatCache(where.home / "statcache.db"), keys)


def _open_cache(where: PushHome) -> None:
    """The home's cache opened as ``VaultState`` opens it, which makes its folders (a push
    does not use it otherwise)."""
    from weightvault.vault.cache import FileCache

    settings: dict[str, Any] = {
        "cache_enabled": True,
        "cache_max_size_gb": 20.0,
        "cache_permissions": "shared",
    }
    settings.update({k: v for k, v in where.settings.items() if k.startswith("cache_")})
    if not settings["cache_enabled"]:
        return
    path = Path(str(settings.get("cache_directory") or "cache"))
    FileCache(
        path if path.is_absolute() else where.home / path,
        int(float(settings["cache_max_size_gb"]) * (1 << 30)),
        private=settings["cache_permissions"] == "private",
    )


def _first_scan(v: _Open) -> None:
    """``refresh.full_scan`` of the store this push just created: nothing to index (checked),
    then the store's id and the journal's head as the index's cursor."""
    head = v.journal.head()
    if (
        head
        or any(True for _ in v.backend.list(layout.REFS))
        or any(True for _ in v.backend.list(layout.PACKS))
    ):
        raise SnapshotUnavailable("another process wrote to the new store: the full path scans it")
    v.index.set_state(STORE_ID, v.store.config.store_id)
    v.index.set_state(CURSOR, str(head))


def light_push(
    where: PushHome,
    model: str,
    files: list[SourceFile],
    seen_ns: int,
    *,
    version: str | None,
    message: str,
    progress: Progress | None = None,
    on_start: Callable[[int], None] | None = None,
    early: EarlyHashes | None = None,
) -> PushResult:
    """``Vault.push(model, files, version=..., message=...)`` for a home ``find_home`` accepted;
    ``files`` as ``scan_source`` found them (not empty) after ``seen_ns``. Raises
    ``SnapshotUnavailable`` (the full path runs) before anything is written in every case the
    module's text names."""
    started = time.perf_counter()
    try:
        v = _checked_open(where, model, files, version)
    except SnapshotUnavailable:
        raise
    except Exception as exc:  # an error of the input or the home: the full path reports it
        raise SnapshotUnavailable(f"the full path reports: {exc}") from None
    try:
        return _push(v, model, files, seen_ns, version, message, progress, on_start, early, started)
    finally:
        v.close()


def _checked_open(where: PushHome, model: str, files: list[SourceFile], version: str | None) -> _Open:
    """The home opened (created when new) after every check that needs no lock."""
    check_model_name(model)
    if version is not None:
        check_new_name(version)
    if where.setting("compression") not in ("none", "zstd", "float"):
        raise SnapshotUnavailable("a compression this path does not know")
    from weightvault.vault import lineage as lineage_module

    if lineage_module.adapter_base(files) is not None:
        raise SnapshotUnavailable("a PEFT adapter: the full path resolves its base")
    keys = None if where.fresh else _model_keys(where, model)  # keys first: nothing written yet
    v = _open(where, keys)
    try:
        if where.fresh:
            _first_scan(v)
        else:
            v.check_current()
            if version is not None and v.index.label_exists(model, version):
                raise SnapshotUnavailable(f"{model}@{version} exists: the full path reports it")
            if version is None and v.index.latest_commit(model) is not None:
                raise SnapshotUnavailable("the full path compares an unlabelled push with the latest version")
            if keys is None and v.store.shows_encryption(model, v.index.latest_label(model)):
                raise SnapshotUnavailable(f"{model} shows encryption: the full path judges it")
    except BaseException:
        v.close()
        raise
    return v


def _model_keys(where: PushHome, model: str) -> tuple[Domain, KeyManager] | None:
    """The keys of ``model`` when it has a keyring (``lightkeys`` judges them); None for a plain
    model of a home without keys or encryption settings; else ``SnapshotUnavailable``."""
    if os.path.lexists(where.store / layout.keyring_key(model)):
        from weightvault.vault.lightkeys import open_push_keys

        return open_push_keys(where, _store_id(where.store), model)
    if os.path.lexists(where.home / "keys") or "encryption" in where.settings:
        raise SnapshotUnavailable(f"{model} may be encrypted now: the full path opens its keys")
    return None


def _push(
    v: _Open,
    model: str,
    files: list[SourceFile],
    seen_ns: int,
    version: str | None,
    message: str,
    progress: Progress | None,
    on_start: Callable[[int], None] | None,
    early: EarlyHashes | None,
    started: float,
) -> PushResult:
    from weightvault.vault import safety as safety_module
    from weightvault.vault.locks import SHARED, holding

    try:
        safety = safety_module.inspect_files(
            files, bool(v.where.setting("refuse_unsafe_pickles")), known=v.stat_cache.checked(files)
        )
    except Exception as exc:  # the full path refuses the file and says why
        raise SnapshotUnavailable(f"the full path reports: {exc}") from None
    if on_start:
        on_start(sum(f.size for f in files))
    # the shared lock keeps a gc from deleting anything between the dedup probes and the commit
    # (docs/format.md, "Locks and online gc")
    with holding(
        v.backend,
        SHARED,
        stale_seconds=float(v.where.setting("lock_stale_seconds")),
        wait_seconds=float(v.where.setting("lock_wait_seconds")),
    ):
        v.check_current()  # what the full path's refresh under the lock would find to do: nothing
        if version is not None and v.index.label_exists(model, version):
            raise SnapshotUnavailable(f"{model}@{version} exists: the full path reports it")
        parent = v.index.latest_commit(model)
        if version is None and parent is not None:
            raise SnapshotUnavailable(f"{model} gained a version meanwhile: the full path compares them")
        # from here on the push writes, and every failure is reported as the full path reports it
        for _attempt in range(PACK_ATTEMPTS):
            pipeline, sink, recipes, manifest = _push_data(
                v, model, parent, message, safety, files, progress, seen_ns, early
            )
            recipe_names = put_push_recipes(v.store, v.index, recipes, v.domain, manifest)
            commit, body = v.store.put_manifest(manifest, v.domain)
            packs = v.index.pack_ids_for_chunks({cid for r in recipes for cid, _ in r.chunks})
            missing = [p for p in packs if not v.backend.exists(layout.pack_key(p))]
            if not missing:
                break
            v.index.drop_packs(missing)  # the store lost them: write their chunks again
        else:
            raise packs_keep_disappearing(missing[0])
        if v.keys is not None:  # a re-encryption may have dropped the slot it sealed under
            v.keys[1].check_slot_held(model, v.keys[0].active_slot)
        info = _commit_version(
            v, model, version, commit, manifest, body, packs, set(recipe_names), len(files)
        )
    _follow_own_changes(v)
    return PushResult(
        version=info,
        bytes_read=pipeline.bytes_read,
        bytes_written=sink.bytes_written,
        chunks_total=pipeline.chunks_total,
        chunks_new=pipeline.chunks_new,
        seconds=time.perf_counter() - started,
    )


def _encode_threads(where: PushHome, files: list[SourceFile]) -> int:
    """``Vault._encode_threads``."""
    workers = int(where.setting("workers"))
    if where.setting("compression") == "none" or not files:
        return 0
    sizes = [f.size for f in files]
    return workers if max(sizes) * workers > sum(sizes) else 0


def _push_data(
    v: _Open,
    model: str,
    parent: str | None,
    message: str,
    safety: dict[str, dict[str, Any]],
    files: list[SourceFile],
    progress: Progress | None,
    seen_ns: int,
    early: EarlyHashes | None,
) -> tuple[Any, Any, list[FileRecipe], Manifest]:
    """``Vault._push_data``: (pipeline, sink, recipes, manifest). An encrypted model's chunks are
    cut by its keyed chunker (``Records.chunker_for``), named by its keyed ids and sealed under
    its active slot; the stat cache serves plain models only, as on the full path."""
    from weightvault.cas.chunker import Chunker
    from weightvault.cas.hashing import chunk_id
    from weightvault.vault.packer import PackSink, default_temp_factory
    from weightvault.vault.push import PushPipeline

    dom = v.domain
    chunker = Chunker(v.store.config.chunking, seed=0 if dom is None else dom.chunker_seed)
    scheme = f"plain:{v.store.config.store_id}:{chunker.params}" if dom is None else None
    cached = v.stat_cache.lookup(files, scheme) if scheme else {}
    workers = int(v.where.setting("workers"))
    pack_size = int(v.where.setting("pack_size_mb")) << 20
    to_read = sum(f.size for f in files if f.abspath not in cached)
    sink = PackSink(
        v.backend,
        v.index,  # type: ignore[arg-type]  # the methods a sink calls, on stdlib sqlite3
        default_temp_factory(v.backend, v.where.home / "tmp"),
        pack_size,
        on_sealed=v.journal_pack,
        per_thread=workers > 1 and to_read >= workers * pack_size,
    )
    encoder = None
    compression = v.where.setting("compression")
    slot = dom.active_slot if dom is not None else 0
    if dom is not None or compression != "none":
        from weightvault.vault.codecs import BlobEncoder

        encoder = BlobEncoder(compression, dom.ciphers[slot] if dom else None, slot)
    pipeline = PushPipeline(
        v.index,  # type: ignore[arg-type]  # the methods a pipeline calls, on stdlib sqlite3
        sink,
        chunker,
        workers,
        progress,
        encoder=encoder,
        chunk_id_fn=dom.chunk_id if dom is not None else chunk_id,
        usable_slots=dom.slots if dom is not None else None,
        encode_threads=_encode_threads(v.where, files),
    )
    try:
        recipes = pipeline.run(files, cached, early=early)
    finally:
        v.index.release_probes()
    if scheme:
        v.stat_cache.record(
            ((f, r, seen_ns) for f, r in zip(files, recipes, strict=True) if f.abspath not in cached),
            scheme,
            safety,
        )
    entries = tuple(FileEntry.of(f.path, r, plain=dom is None) for f, r in zip(files, recipes, strict=True))
    manifest = Manifest(
        model=model, files=entries, parent=parent, message=message, metadata={}, lineage=(), safety=safety
    )
    return pipeline, sink, recipes, manifest


def _commit_version(
    v: _Open,
    model: str,
    version: str | None,
    commit: str,
    manifest: Manifest,
    body: bytes,
    packs: set[str],
    recipes: set[str],
    file_count: int,
) -> VersionInfo:
    """``Versions._commit_version``: the ref in the store first (the truth; an encrypted model's
    with its MAC, ``Records._signer``), its journal entry, then the index row; when the index
    refuses it the ref is taken back."""
    created = datetime.now(UTC)
    signer: RefSigner | None = None
    if v.domain is not None:
        from functools import partial

        from weightvault.vault import refauth

        signer = partial(refauth.sign, v.domain)
    label = create_version_ref(v.store, v.index.label_exists, model, version, commit, created, signer)
    v.journal_ref(model, "version", label)
    with taken_back_on_failure(v.backend.delete, v.journal_ref, model, label):
        aliases = v.index.add_version(
            model=model,
            label=label,
            commit=commit,
            parent=manifest.parent,
            created=created,
            message=manifest.message,
            metadata={},
            total_size=manifest.total_size,
            file_count=file_count,
            manifest=body,
            required_packs=packs,
            required_recipes=recipes,
        )
    return VersionInfo(
        model=model,
        label=label,
        commit=commit,
        created=created,
        message=manifest.message,
        metadata={},
        total_size=manifest.total_size,
        file_count=file_count,
        parent=manifest.parent,
        aliases=aliases,
    )


def _follow_own_changes(v: _Open) -> None:
    """``Following.follow_own_changes``: apply the journal entries after the cursor, which are
    this push's own (its packs and its version, already in the index, so applying them changes
    nothing but the cursor). At the first entry that is not one of those (another process's)
    it stops, and the next command's refresh applies the rest, as after a store that could not
    be reached."""
    from weightvault.core.errors import StorageError
    from weightvault.vault.journal import PACK, REF

    try:
        seq = v.cursor()
        start = seq
        while (entry := v.journal.read(seq + 1)) is not None:
            if not _applied(v, entry, PACK, REF):
                break
            seq += 1
        if seq != start:
            v.index.set_state(CURSOR, str(seq))
    except StorageError:
        pass


def _applied(v: _Open, entry: Mapping[str, Any], pack: str, ref: str) -> bool:
    """Whether applying ``entry`` (``refresh.apply_entry``) would leave the index as it is."""
    kind = entry.get("kind")
    if kind == pack:
        return isinstance(entry.get("id"), str) and v.index.has_pack(str(entry["id"]))
    if kind == ref and entry.get("ref") == "version":
        model, name = entry.get("model"), entry.get("name")
        if not isinstance(model, str) or not isinstance(name, str):
            return False
        body = v.store.get_ref(model, "version", name)
        have = v.index.version_commit(model, name)
        return body is not None and have is not None and body.get("commit") == have
    return False
