"""What an open vault holds: its settings, stores, index, journal, keys and caches.

The operations of the vault work on this state (or on the layers above it that read and write
versions); the façade ``vault.Vault`` builds it once and adds the user's verbs."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from weightvault.cas.chunker import Chunker
from weightvault.core.errors import (
    ConfigError,
    IntegrityError,
    StorageError,
)
from weightvault.registry.index import RegistryIndex
from weightvault.storage import oscaps
from weightvault.storage.backend import Backend
from weightvault.storage.oserror import os_error
from weightvault.storage.replica import ReplicaSet
from weightvault.vault.cache import FileCache
from weightvault.vault.config import Settings
from weightvault.vault.home import make_home
from weightvault.vault.journal import Journal
from weightvault.vault.keyring import KeyManager
from weightvault.vault.reader import ChunkReader
from weightvault.vault.replicas import open_stores
from weightvault.vault.statcache import StatCache
from weightvault.vault.store import Store
from weightvault.vault.trust import LocalTrust

if TYPE_CHECKING:
    from weightvault.registry.access import AccessStore
    from weightvault.vault.refauth import AliasRollbackError


#: Called with the bytes done since the last call; negative when bytes already counted are
#: dropped (a remote pull that fetches a file again after its SHA-256 failed).
Progress = Callable[[int], None]
#: Called once per operation with the total byte count before work starts.
ProgressStart = Callable[[int], None]


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


class VaultState:
    """The parts a vault is made of, opened once from its settings."""

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
        make_home(settings.home)
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
        self._rollbacks: dict[tuple[str, str], AliasRollbackError] = {}
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
        #: files this machine hashed before, so a re-push does not read them again (plain models)
        self.stat_cache = StatCache(settings.home / "statcache.db")

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
