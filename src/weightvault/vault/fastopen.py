"""Opening a home for reading without the vault stack, only when that is as safe as the full path.

``Vault.open`` loads pydantic settings, the storage backends, the key manager and SQLAlchemy's
ORM, and every read first refreshes the index from the store's journal. For a local store whose
index already applied every journal entry, all of that ends in the same rows this module reads
with the standard library: the settings are the defaults (or a few known-harmless ones, checked
strictly), the store is a folder, and "nothing changed" is one ``stat`` of the next journal entry.

Anything else raises ``SnapshotUnavailable`` and the caller takes the full path: a config this
module does not fully understand (a database URL, a cloud or replicated store, encryption
settings other than local key files, or those for a caller that does not read them, access
control, a value pydantic might refuse), an environment variable it does not
know, an index of another schema or another store, or a journal entry not yet applied (the full
path applies it; the next read is fast again).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from weightvault.core import layout
from weightvault.registry.snapshot import IndexSnapshot, SnapshotUnavailable

#: ``vault.store.STORE_FORMAT`` (a test keeps them equal; importing it loads the whole store)
STORE_FORMAT = 2
#: ``vault.refresh.CURSOR`` and ``STORE_ID``: the index's journal cursor and the store it mirrors
CURSOR = "journal_seq"
STORE_ID = "store_id"
#: variables that change nothing a read shows; any other ``WEIGHTVAULT_*`` one takes the full path
HARMLESS_ENV = frozenset(
    {"WEIGHTVAULT_HOME", "WEIGHTVAULT_DEBUG", "WEIGHTVAULT_PORTABLE", "WEIGHTVAULT_STORE_URL"}
)


def _number(low: float, high: float | None = None, *, integer: bool = False) -> Any:
    def ok(v: Any) -> bool:
        kinds = (int,) if integer else (int, float)
        return isinstance(v, kinds) and not isinstance(v, bool) and v >= low and (high is None or v <= high)

    return ok


#: config keys a read may ignore, each with a check strict enough that pydantic accepts the value
SAFE_KEYS: dict[str, Any] = {
    "store_url": lambda v: isinstance(v, str),
    "cache_enabled": lambda v: isinstance(v, bool),
    "cache_directory": lambda v: isinstance(v, str) and bool(v),
    "cache_max_size_gb": _number(0),
    "cache_permissions": lambda v: v in ("shared", "private"),
    "cache_fill": lambda v: v in ("auto", "always"),
    "link_mode": lambda v: v in ("auto", "reflink", "hardlink", "copy"),
    "link_fallback": lambda v: v in ("copy", "hardlink"),
    "compression": lambda v: v in ("none", "zstd", "float"),
    "workers": _number(1, 64, integer=True),
    "pack_size_mb": _number(1, 4096, integer=True),
    "gc_grace_seconds": _number(0),
    "refuse_unsafe_pickles": lambda v: isinstance(v, bool),
}


def _local_key_file(v: Any) -> bool:
    """A key provider config naming a local key file by its path, nothing else."""
    return (
        isinstance(v, dict)
        and set(v) == {"type", "path"}
        and v["type"] == "local_file"
        and (isinstance(v["path"], str) and bool(v["path"]))
    )


def _local_encryption(v: Any) -> bool:
    """An ``encryption`` section whose keys can only come from local key files: ``enabled`` (it
    decides what a push does, never a read), ``provider`` and ``trusted_providers``."""
    if not isinstance(v, dict) or not set(v) <= {"enabled", "provider", "trusted_providers"}:
        return False
    provider = v.get("provider", {})
    trusted = v.get("trusted_providers", [])
    return (
        isinstance(v.get("enabled", False), bool)
        and (provider == {} or _local_key_file(provider))
        and isinstance(trusted, list)
        and all(_local_key_file(t) for t in trusted)
    )


#: config keys a pull may also read (with ``vault.lightkeys``), each as strictly checked
PULL_KEYS: dict[str, Any] = {"encryption": _local_encryption}


def _config(home: Path, extra_keys: Mapping[str, Any]) -> dict[str, Any]:
    path = home / "config.yaml"
    if not path.is_file():
        return {}
    return read_config(path, extra_keys)


def read_config(path: Path, extra_keys: Mapping[str, Any] = {}) -> dict[str, Any]:
    """The settings of the config file at ``path`` when each is one of ``SAFE_KEYS`` (or
    ``extra_keys``) and passes its check; else ``SnapshotUnavailable``."""
    import yaml

    try:
        raw = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise SnapshotUnavailable(f"config file: {exc}") from None
    if not isinstance(raw, dict):
        raise SnapshotUnavailable("config file is not a mapping")
    for key, value in raw.items():
        check = SAFE_KEYS.get(key) or extra_keys.get(key)
        if check is None or not check(value):
            raise SnapshotUnavailable(f"config key {key!r} needs the full settings")
    return raw


def _local_store(url: str) -> Path:
    """The folder of a ``file:///`` URL or an absolute path; any other store is not local."""
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(url)
    if (
        parts.scheme == "file"
        and parts.netloc in ("", "localhost")
        and not parts.query
        and not parts.fragment
    ):
        path = unquote(parts.path)
    elif parts.scheme == "" and url.startswith("/"):
        path = url
    else:
        raise SnapshotUnavailable(f"store {url!r} is not a local folder")
    if not path.startswith("/"):
        raise SnapshotUnavailable(f"store {url!r} is not an absolute path")
    return Path(path)


def _store_id(root: Path) -> str:
    try:
        raw = json.loads((root / layout.CONFIG_KEY).read_bytes())
    except (OSError, ValueError) as exc:
        raise SnapshotUnavailable(f"store config: {exc}") from None
    if not isinstance(raw, dict) or raw.get("format") != STORE_FORMAT or not isinstance(raw.get("id"), str):
        raise SnapshotUnavailable("store config of another format")
    return str(raw["id"])


#: variables a pull reads (the settings it places files by): accepted by ``open_home`` when asked
PULL_ENV = {
    "WEIGHTVAULT_CACHE_DIRECTORY": "cache_directory",
    "WEIGHTVAULT_CACHE_PERMISSIONS": "cache_permissions",
    "WEIGHTVAULT_LINK_MODE": "link_mode",
    "WEIGHTVAULT_LINK_FALLBACK": "link_fallback",
}


@dataclass(frozen=True, slots=True)
class FastHome:
    """Where a home is and the settings it gives (the config file's, then the accepted
    environment variables', as ``load_settings`` layers them); every other setting is default."""

    home: Path
    store: Path
    settings: dict[str, Any]


def open_home(
    home: str | None, env_settings: Mapping[str, str] = {}, extra_keys: Mapping[str, Any] = {}
) -> tuple[FastHome, IndexSnapshot]:
    """The home and a snapshot of its index, which has applied every change the store's journal
    holds (as a refresh would have left it), or ``SnapshotUnavailable``. ``home``: the
    ``--home`` option as given; ``env_settings``: variables accepted besides the harmless ones
    (variable -> setting, each value checked as strictly as the config file's); ``extra_keys``:
    config keys accepted besides ``SAFE_KEYS`` (key -> its check), for a caller that reads them."""
    env = os.environ
    unknown = sorted(
        k for k in env if k.startswith("WEIGHTVAULT_") and k not in HARMLESS_ENV and k not in env_settings
    )
    if unknown:
        raise SnapshotUnavailable(f"environment {unknown[0]} needs the full settings")
    home_path = Path(home or env.get("WEIGHTVAULT_HOME") or "~/.weightvault").expanduser().absolute()
    config = _config(home_path, extra_keys)
    for var, key in env_settings.items():
        if (value := env.get(var)) is not None:
            if not value or not SAFE_KEYS[key](value):
                raise SnapshotUnavailable(f"environment {var} needs the full settings")
            config[key] = value
    url = env.get("WEIGHTVAULT_STORE_URL", config.get("store_url"))
    root = _local_store(url) if url else home_path / "store"
    store_id = _store_id(root)
    snap = IndexSnapshot(home_path / "index.db")
    try:
        cursor = snap.state(CURSOR)
        if cursor is None or not cursor.isdigit() or snap.state(STORE_ID) != store_id:
            raise SnapshotUnavailable("the index has not followed this store yet")
        # after the snapshot began: every entry up to ``cursor`` is in what it shows, and the
        # store has no later one now
        if os.path.lexists(root / layout.journal_key(int(cursor) + 1)):
            raise SnapshotUnavailable("the store's journal has changes this index has not applied")
    except BaseException:
        snap.close()
        raise
    return FastHome(home_path, root, config), snap


def open_current(home: str | None) -> IndexSnapshot:
    """``open_home``'s snapshot, for a read that needs no setting."""
    return open_home(home)[1]
