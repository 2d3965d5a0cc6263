"""A pull from a local store without the vault stack: of a plain model, or of an encrypted one
whose keys ``vault.lightkeys`` can open as the full path would.

``Records.pull`` opens settings (pydantic), storage, keys and SQLAlchemy's index before it
places a byte: about 0.4 CPU-s of start-up, all of a warm pull's time and a fifth of a cold
1 GiB pull's. This module does the same pull from what ``vault.fastopen`` can read safely: the
revision resolved by the index's rules (``IndexSnapshot.resolve``), the manifest from the index
checked against its commit id (as the store checks it), the recipes and chunk locations from
the same index rows (``IndexSnapshot``, the standard library's sqlite3), and the destination
planned, built, verified (every chunk's BLAKE3, or AES-GCM tag when sealed; every file's
SHA-256) and committed by the same ``vault.pull``, ``vault.reader`` and ``vault.placement``
code. An encrypted model's manifest and recipes are opened with its domain (``Domain``, as
``Records`` opens them) and its plaintext cached privately, as the full path does.

``fastopen.open_home`` has already checked that the index applied every change the store's
journal holds (the refresh a full pull starts with would change nothing). Two cases are served:

* every selected file is in the cache and placed by a clone or a hardlink: placed in this
  thread, without a thread pool; the destination may already hold other files;
* otherwise (files to read from the store, or copies to make): only into a destination that
  does not exist yet or is an empty folder. The chunk reader is loaded only when a file is
  read from the store.

It raises ``SnapshotUnavailable`` (the caller takes the full path) before anything is written
for every other case: an encrypted model ``vault.lightkeys`` leaves to the full path (its
keys, or any check of them, in doubt), a recipe or chunk the index lacks, a sealed manifest or
recipe that does not open, a destination file that differs from the version, no file selected,
any error while planning.
While the files are built, a pack gone from the store (another machine's gc) or any other
failure than a verification one is undone by ``materialise`` and declined too: the full path
refreshes and retries. A chunk or file that fails its check (``CorruptObjectError``) and an
interrupt are raised as they are, after the same undoing: the caller reports them as the full
path does.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from weightvault.core import layout
from weightvault.core.errors import CorruptObjectError
from weightvault.core.manifest import FileRecipe
from weightvault.core.revision import Ref
from weightvault.core.types import PullResult
from weightvault.registry.snapshot import IndexSnapshot, SnapshotUnavailable
from weightvault.vault.cache import FileCache
from weightvault.vault.cachefill import fills_cache
from weightvault.vault.fastopen import FastHome
from weightvault.vault.lightkeys import manifest_opener, open_keys
from weightvault.vault.placement import Placer, check_link_mode
from weightvault.vault.pull import (
    build_version,
    plan,
    pull_result,
    select_files,
    unmatched_includes,
)

if TYPE_CHECKING:  # the reader, the local backend and the keys are loaded only when needed
    from weightvault.storage.local import LocalBackend
    from weightvault.vault.keyring import Domain
    from weightvault.vault.reader import ChunkReader

#: ``Settings`` defaults of what a pull reads (a test keeps them equal)
DEFAULTS: dict[str, Any] = {
    "cache_enabled": True,
    "cache_max_size_gb": 20.0,
    "cache_permissions": "shared",
    "cache_fill": "auto",
    "link_mode": "auto",
    "link_fallback": "copy",
    "workers": 2,
}


def _setting(where: FastHome, key: str) -> Any:
    return where.settings.get(key, DEFAULTS[key])


def cache_of(where: FastHome) -> FileCache | None:
    """The home's cache as ``VaultState`` opens it (``Settings.cache_path``, ``cache_max_bytes``)."""
    if not _setting(where, "cache_enabled"):
        return None
    path = Path(where.settings.get("cache_directory") or "cache")
    return FileCache(
        path if path.is_absolute() else where.home / path,
        int(float(_setting(where, "cache_max_size_gb")) * (1 << 30)),
        private=_setting(where, "cache_permissions") == "private",
    )


def _sealed_recipes(
    dom: Domain, snap: IndexSnapshot, backend: LocalBackend, shas: list[str], allow_plain: bool
) -> dict[str, FileRecipe]:
    """The recipes of an encrypted model's files as ``Records._find_recipe`` finds them: the
    file's keyed recipe (from the index, else the store), opened and checked to name the file;
    without one, the plain recipe of a file pushed before the model was encrypted, only in a
    version that was not pushed encrypted."""
    from weightvault.core.errors import MissingObjectError

    names = {sha: dom.recipe_name(sha) for sha in dict.fromkeys(shas)}
    bodies = snap.get_recipes(list(names.values()))
    known: dict[str, FileRecipe] = {}
    for sha, name in names.items():
        body = bodies.get(name)
        if body is None:
            try:
                body = backend.get(layout.recipe_key(name))
            except MissingObjectError:
                if not allow_plain:
                    raise
                continue
        recipe = FileRecipe.from_bytes(dom.open_recipe(name, body))
        if recipe.sha256 != sha:
            raise SnapshotUnavailable(f"recipe {name} names another file: the full path reports it")
        known[sha] = recipe
    return known


def _recipes(
    where: FastHome,
    snap: IndexSnapshot,
    shas: list[str],
    dom: Domain | None,
    allow_plain: bool,
    inline: dict[str, FileRecipe],
) -> tuple[ChunkReader, dict[str, FileRecipe]]:
    """The store's reader (of ``dom``'s model when it is encrypted) and the recipes of ``shas``:
    an encrypted model's keyed ones, then those ``inline`` in the manifest, then from the index,
    else (a version this home learned of from the store's journal) the store's recipe objects, as
    ``Records`` finds them; any doubt declines before anything is written."""
    from weightvault.storage.local import LocalBackend
    from weightvault.vault.reader import ChunkReader

    backend = LocalBackend(where.store)
    try:
        known = {} if dom is None else _sealed_recipes(dom, snap, backend, shas, allow_plain)
        known.update({sha: r for sha, r in inline.items() if sha not in known})
        rest = [sha for sha in shas if sha not in known]
        known.update({sha: FileRecipe.from_bytes(body) for sha, body in snap.get_recipes(rest).items()})
        for sha in dict.fromkeys(rest):
            if sha not in known:
                known[sha] = FileRecipe.named(backend.get(layout.recipe_key(sha)), sha)
    except Exception:  # a recipe missing, malformed or failing its seal: the full path reports it
        raise SnapshotUnavailable("the full path reads the recipes") from None
    if dom is None:
        return ChunkReader(backend, snap), known
    from weightvault.vault.lightkeys import codec_of

    return ChunkReader(backend, snap, codec_of(dom)), known


def _empty_or_absent(dest: Path) -> bool:
    if not os.path.lexists(dest):
        return True
    if dest.is_symlink() or not dest.is_dir():
        return False
    with os.scandir(dest) as entries:
        return next(entries, None) is None


def _unknown(sha256: str) -> FileRecipe:
    raise SnapshotUnavailable(f"file {sha256} is not where the checks found it: the full path pulls it")


def light_pull(
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
    """``Records.pull``, with the same result on disk and the same ``PullResult``; else
    ``SnapshotUnavailable`` with nothing written (see the module's text)."""
    started = time.perf_counter()
    try:
        mode = check_link_mode(link_mode or _setting(where, "link_mode"))
    except Exception:
        raise SnapshotUnavailable("the full path reports the link mode") from None
    info = snap.resolve(ref.model, ref.revision)
    dom = open_keys(where, snap, info.model, ref.revision)  # before anything is written
    info = snap.with_files(info, None if dom is None else manifest_opener(dom))
    sealed = dom is not None and not (snap.manifest_body(info.commit) or b"").lstrip().startswith(b"{")
    cache = cache_of(where)
    dest_path = dest.absolute()
    files = select_files(info.files, include, exclude)
    if not files:
        raise SnapshotUnavailable("no file selected: the full path reports it")
    try:
        planned = plan(dest_path, files, force, cache)
    except Exception:  # a conflict, an unsafe path, an unreadable file: reported there
        raise SnapshotUnavailable("the full path reports the destination") from None
    if os.path.lexists(dest_path) and any(p.target.exists() or p.target.is_symlink() for p in planned):
        raise SnapshotUnavailable("--force would replace a file: the full path does it")
    try:
        # an encrypted model's plaintext is cached for this user only (``Records._cache_private``)
        placer = Placer(mode, _setting(where, "link_fallback"), cache, dest_path, private=dom is not None)
        placer.check()
        copies = bool(planned) and placer.copies()
        fill = fills_cache(_setting(where, "cache_fill"), remote=False, placer=placer)  # a local store
    except Exception:
        raise SnapshotUnavailable("the full path reports the link mode") from None
    to_read = [p for p in planned if cache is None or cache.usable(p.entry.sha256, p.entry.size) is None]
    if (to_read or copies) and not _empty_or_absent(dest_path):
        raise SnapshotUnavailable("bytes to write into an existing folder: the full path does it")
    reader: ChunkReader | None = None
    known: dict[str, FileRecipe] = {}
    if to_read:
        inline = {p.entry.sha256: r for p in to_read if (r := p.entry.inline_recipe()) is not None}
        reader, known = _recipes(where, snap, [p.entry.sha256 for p in to_read], dom, not sealed, inline)

    def recipe_for(sha: str) -> FileRecipe:
        found = known.get(sha)
        return found if found is not None else _unknown(sha)

    on_start(sum(p.entry.size for p in planned))
    try:
        counters = build_version(
            dest_path,
            planned,
            known,
            recipe_for,
            reader,
            cache,
            int(_setting(where, "workers")),
            progress,
            placer,
            fill=fill,
            complete=True,  # a chunk the snapshot lacks declines before anything is read
            in_thread=not (to_read or copies),  # links only: no pool for a few metadata calls each
        )
    except CorruptObjectError:  # verification failed: reported as the full path reports it
        raise
    except Exception as exc:  # undone by ``materialise``: the destination is as it was
        raise SnapshotUnavailable(f"the full path pulls it ({exc})") from None
    if cache is not None:
        cache.prune(keep=frozenset(p.entry.sha256 for p in planned))
    return pull_result(info, files, counters, started, unmatched_includes(info.files, include), placer)
