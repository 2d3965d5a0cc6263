"""A pull whose every file is in the local cache and is placed by a link (clone or hardlink),
without the vault stack.

``Records.pull`` opens settings, storage, keys and SQLAlchemy's index before it places a byte;
for a version whose files are all cached and linked into place, that start-up is nearly all
of its time. This module does the same pull from what ``vault.fastopen`` can read safely: the
revision resolved by the index's rules (``IndexSnapshot.resolve``), the manifest from the
index checked against its commit id (as the store checks it), and the destination planned,
built and committed by the same ``vault.pull`` and ``vault.placement`` code.

It handles only that case and raises ``SnapshotUnavailable`` (the caller takes the full path)
before anything is written for every other: a model with a keyring (encrypted), a file not in
the cache or whose entry fails the cache's checks, placement by copy, a destination file that
differs from the version, no file selected, any error. Should a cache entry vanish between
the check and its placement, ``materialise`` undoes the whole pull before this module
declines, so the destination is again as it was.
"""

from __future__ import annotations

import fnmatch
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

from weightvault.core import layout
from weightvault.core.manifest import FileRecipe
from weightvault.core.revision import Ref
from weightvault.core.types import PullResult
from weightvault.registry.snapshot import IndexSnapshot, SnapshotUnavailable
from weightvault.vault.cache import FileCache
from weightvault.vault.fastopen import FastHome
from weightvault.vault.placement import Placer, check_link_mode
from weightvault.vault.pull import materialise, plan, select_files

#: ``Settings`` defaults of what a pull reads (a test keeps them equal)
DEFAULTS: dict[str, Any] = {
    "cache_enabled": True,
    "cache_max_size_gb": 20.0,
    "cache_permissions": "shared",
    "link_mode": "auto",
    "link_fallback": "copy",
    "workers": 2,
}


def _setting(where: FastHome, key: str) -> Any:
    return where.settings.get(key, DEFAULTS[key])


def cache_of(where: FastHome) -> FileCache:
    """The home's cache as ``VaultState`` opens it (``Settings.cache_path``, ``cache_max_bytes``)."""
    if not _setting(where, "cache_enabled"):
        raise SnapshotUnavailable("no cache: every file comes from the store")
    path = Path(where.settings.get("cache_directory") or "cache")
    return FileCache(
        path if path.is_absolute() else where.home / path,
        int(float(_setting(where, "cache_max_size_gb")) * (1 << 30)),
        private=_setting(where, "cache_permissions") == "private",
    )


def _not_cached(sha256: str) -> FileRecipe:
    raise SnapshotUnavailable(f"cache entry {sha256} went away: the store has the data")


def warm_pull(
    where: FastHome,
    snap: IndexSnapshot,
    ref: Ref,
    dest: Path,
    *,
    include: Sequence[str] | None,
    exclude: Sequence[str] | None,
    force: bool,
    link_mode: str | None,
    progress: Callable[[int], None],
    on_start: Callable[[int], None],
) -> PullResult:
    """``Records.pull`` of a version whose files are all cached and linked into place, with the
    same result on disk and the same ``PullResult``; else ``SnapshotUnavailable``, nothing written."""
    started = time.perf_counter()
    try:
        mode = check_link_mode(link_mode or _setting(where, "link_mode"))
    except Exception:
        raise SnapshotUnavailable("the full path reports the link mode") from None
    if mode == "copy":
        raise SnapshotUnavailable("copies need the data read: the full path does them")
    info = snap.with_files(snap.resolve(ref.model, ref.revision))
    model = info.model
    if os.path.lexists(where.store / layout.keyring_key(model)):
        raise SnapshotUnavailable(f"model {model} has keys: the full path opens them")
    cache = cache_of(where)
    dest_path = dest.absolute()
    files = select_files(info.files, include, exclude)
    if not files:
        raise SnapshotUnavailable("no file selected: the full path reports it")
    unmatched = tuple(p for p in include or () if not any(fnmatch.fnmatchcase(f.path, p) for f in info.files))
    try:
        planned = plan(dest_path, files, force, cache)
    except Exception:  # a conflict, an unsafe path, an unreadable file: reported there
        raise SnapshotUnavailable("the full path reports the destination") from None
    if os.path.lexists(dest_path) and any(p.target.exists() or p.target.is_symlink() for p in planned):
        raise SnapshotUnavailable("--force would replace a file: the full path does it")
    if any(cache.usable(p.entry.sha256, p.entry.size) is None for p in planned):
        raise SnapshotUnavailable("a file is not in the cache")
    try:
        placer = Placer(mode, _setting(where, "link_fallback"), cache, dest_path)
        placer.check()
        copies = bool(planned) and placer.copies()
    except Exception:
        raise SnapshotUnavailable("the full path reports the link mode") from None
    if copies:
        raise SnapshotUnavailable("placement by copy: the full path does it")
    on_start(sum(p.entry.size for p in planned))
    try:
        counters = materialise(
            dest_path,
            planned,
            _not_cached,
            cast(Any, None),  # never read: a file not in the cache declines in ``_not_cached``
            cache,
            int(_setting(where, "workers")),
            progress,
            placer,
            fill=False,  # only cached files are placed here: nothing is rebuilt to fill with
            in_thread=True,  # links only: no thread pool to start for a few metadata calls each
        )
    except Exception as exc:  # undone by ``materialise``: the destination is as it was
        raise SnapshotUnavailable(f"the full path pulls it ({exc})") from None
    cache.prune(keep=frozenset(p.entry.sha256 for p in planned))
    return PullResult(
        version=info,
        files=tuple(f.path for f in files),
        bytes_total=sum(f.size for f in files),
        bytes_from_cache=counters.from_cache,
        bytes_from_store=counters.from_store,
        seconds=time.perf_counter() - started,
        unmatched_includes=unmatched,
        link_mode=mode,
        placement=dict(placer.counts),
    )
