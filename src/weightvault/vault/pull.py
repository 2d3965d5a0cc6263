"""Materialising a version into a folder: placed from the cache (``placement``), else rebuilt and verified.

A pull is all or nothing. Conflicts with existing files are found before the first byte is
written; every file is then built under a temporary name beside its destination (through the
cache when it fits) and verified; only when all of them are ready are they renamed into place.
If anything fails, the temporary files and the folders the pull created are removed and files
it replaced are put back: the destination is left as it was.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from weightvault.core.errors import (
    DestinationConflictError,
    UnsafePathError,
    WeightvaultError,
)
from weightvault.core.manifest import FileEntry, FileRecipe
from weightvault.storage.batch_sync import Batch
from weightvault.storage.oserror import os_error
from weightvault.vault.cache import FileCache
from weightvault.vault.placement import Placer

if TYPE_CHECKING:  # the reader loads the index (SQLAlchemy): a warm pull from the cache needs neither
    from weightvault.cas.pack import Writable
    from weightvault.vault.reader import ChunkReader

# Imported where a file is built, never at the top: thread pools (``concurrent.futures`` loads
# ``logging``) and the O_DIRECT writer are what a pull that only links cached files would not
# run, yet they cost it more start-up than its own work (``vault.warmpull``).

#: files up to this size are built by their own, wider pool: their cost is latency (an index
#: lookup, a ranged read, an fsync of the cache file), not CPU, so many in flight overlap it
#: (a 10,000-file pull with 2 workers waited on 10,000 fsyncs two at a time)
SMALL_FILE = 256 << 10
SMALL_FILE_THREADS = 8
#: a pulled copy's permission bits before the umask, as a copy of the cache entry gets them
COPY_MODE = 0o666


def select_files(
    files: Sequence[FileEntry], include: Sequence[str] | None, exclude: Sequence[str] | None
) -> list[FileEntry]:
    """Hub-style patterns: ``*`` also matches ``/``, so ``*.safetensors`` matches in subfolders."""
    out = []
    for f in files:
        if include and not any(fnmatch.fnmatchcase(f.path, p) for p in include):
            continue
        if exclude and any(fnmatch.fnmatchcase(f.path, p) for p in exclude):
            continue
        out.append(f)
    return out


def safe_target(dest: Path, rel: str) -> Path:
    """``dest/rel`` with no symlinked folder on the way that could lead outside ``dest``."""
    target = dest.joinpath(*rel.split("/"))
    for parent in list(target.parents):
        if parent == dest or dest not in parent.parents:
            break
        if parent.is_symlink():
            raise UnsafePathError(f"{parent} is a symlink; refusing to write through it")
        if parent.exists() and not parent.is_dir():
            raise DestinationConflictError(f"{parent} exists and is not a folder")
    return target


def _same_content(path: Path, entry: FileEntry, cache: FileCache | None) -> bool:
    st = path.stat()
    if st.st_size != entry.size:
        return False
    if cache is not None:
        for cached in cache.paths_for(entry.sha256):
            try:
                if os.path.samefile(cached, path):
                    return True
            except FileNotFoundError:
                pass
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(8 << 20):
            h.update(block)
    return h.hexdigest() == entry.sha256


@dataclass(frozen=True, slots=True)
class PlannedFile:
    entry: FileEntry
    target: Path


def plan(dest: Path, files: list[FileEntry], force: bool, cache: FileCache | None) -> list[PlannedFile]:
    if dest.exists() and not dest.is_dir():
        raise DestinationConflictError(f"destination {dest} exists and is not a folder")
    planned: list[PlannedFile] = []
    conflicts: list[str] = []
    for entry in files:
        target = safe_target(dest, entry.path)
        if target.is_symlink() or target.exists():
            if target.is_dir() and not target.is_symlink():
                raise DestinationConflictError(f"{target} is a folder; the version has a file there")
            if not target.is_symlink() and _same_content(target, entry, cache):
                continue
            if not force:
                conflicts.append(entry.path)
                continue
        planned.append(PlannedFile(entry, target))
    if conflicts:
        more = f" and {len(conflicts) - 3} more" if len(conflicts) > 3 else ""
        raise DestinationConflictError(
            f"{len(conflicts)} file(s) in {dest} differ from the version ({', '.join(conflicts[:3])}{more}); "
            "use --force to overwrite"
        )
    return planned


@dataclass(slots=True)
class PullCounters:
    from_cache: int = 0
    from_store: int = 0


def make_dirs(path: Path, created: list[Path]) -> None:
    """``mkdir -p path``, appending each folder it creates (outermost first) to ``created``."""
    missing: list[Path] = []
    here = path
    while not here.is_dir():
        if here.exists() or here.is_symlink():
            raise DestinationConflictError(f"{here} exists and is not a folder")
        missing.append(here)
        if here.parent == here:
            break
        here = here.parent
    for folder in reversed(missing):
        try:
            folder.mkdir()
        except FileExistsError:
            if not folder.is_dir():
                raise DestinationConflictError(f"{folder} exists and is not a folder") from None
            continue
        except OSError as exc:
            raise os_error(exc, f"creating folder {folder}") from exc
        created.append(folder)


def remove_dirs(created: list[Path]) -> None:
    """Remove the folders a failed pull created, innermost first, if nothing else is in them."""
    for folder in reversed(created):
        with contextlib.suppress(OSError):
            folder.rmdir()


class _Tee:
    """Writes every piece to two files: the cache entry and the destination's copy of it."""

    def __init__(self, first: Writable, second: Writable) -> None:
        self._first = first
        self._second = second

    def write(self, data: bytes | bytearray | memoryview, /) -> int:
        self._first.write(data)
        return self._second.write(data)


@dataclass(frozen=True, slots=True)
class _Admission:
    """A verified cache temp file that joins the cache once the batch it belongs to is durable."""

    temp: Path
    sha256: str
    private: bool


@dataclass(slots=True)
class _Context:
    """What every file of one pull shares."""

    recipe_for: Callable[[str], FileRecipe]
    reader: ChunkReader
    cache: FileCache | None
    counters: PullCounters
    progress: Callable[[int], None]
    placer: Placer
    #: placing a cached file would copy it: write the destination in the same pass instead
    tee: bool = False
    #: small cache entries written in that pass, made durable together at the end of the pull
    admissions: list[_Admission] = field(default_factory=list)


def _open_small(path: Path, mode: int) -> BinaryIO:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    return open(fd, "wb")


def _build_tee(item: PlannedFile, recipe: FileRecipe, ctx: _Context, tmp: Path) -> None:
    """Rebuild a file into its cache entry and its destination at once (the copy a placement
    would make, without reading the entry back). A small entry is not fsynced here: it joins
    the cache after the batch sync at the end of the pull (``materialise``)."""
    from weightvault.storage.direct_io import DirectWriter

    cache = ctx.cache
    assert cache is not None
    entry, private = item.entry, ctx.placer.private
    build = cache.temp_file(private)
    try:
        if entry.size > SMALL_FILE:
            with DirectWriter(build, cache.temp_mode(private)) as out, DirectWriter(tmp, COPY_MODE) as copy:
                ctx.reader.write_file(recipe, _Tee(out, copy), entry.path, ctx.progress)
                copy.close(sync=False)  # a pulled copy is as durable as a placed one: not synced
            cache.admit(build, entry.sha256, private)
            ctx.placer.note("copy")
        else:
            with _open_small(build, cache.temp_mode(private)) as out, _open_small(tmp, COPY_MODE) as copy:
                ctx.reader.write_file(recipe, _Tee(out, copy), entry.path, ctx.progress)
            ctx.admissions.append(_Admission(build, entry.sha256, private))
            ctx.placer.note("copy")
    except BaseException:
        build.unlink(missing_ok=True)
        raise


def _stage(item: PlannedFile, ctx: _Context) -> Path:
    """Build one file, verified, under a temporary name beside its target; returns that name.

    ``ctx.placer`` puts cached files there (and counts how); ``placer.private`` says whether the
    model's cache entries are private (an encrypted model's plaintext)."""
    entry, target = item.entry, item.target
    cache, placer, progress = ctx.cache, ctx.placer, ctx.progress
    private = placer.private
    tmp = target.parent / f".{target.name}.{os.urandom(6).hex()}.wv-tmp"
    try:
        source = cache.lookup(entry.sha256, entry.size, private) if cache is not None else None
        if source is not None:
            placer.place(source, tmp)
            ctx.counters.from_cache += entry.size
            progress(entry.size)
        else:
            recipe = ctx.recipe_for(entry.sha256)
            into_cache = cache is not None and cache.fits(entry.size)
            if into_cache and ctx.tee:
                _build_tee(item, recipe, ctx, tmp)
                ctx.counters.from_store += entry.size
                return tmp
            build = cache.temp_file(private) if into_cache and cache is not None else tmp
            mode = cache.temp_mode(private) if into_cache and cache is not None else 0o644
            try:
                if entry.size > SMALL_FILE:
                    from weightvault.storage.direct_io import DirectWriter

                    with DirectWriter(build, mode) as out:
                        ctx.reader.write_file(recipe, out, entry.path, progress)
                else:  # no aligned buffers to set up for a few KiB: the page cache, then fsync
                    with _open_small(build, mode) as small:
                        ctx.reader.write_file(recipe, small, entry.path, progress)
                        small.flush()
                        os.fsync(small.fileno())
            except BaseException:
                build.unlink(missing_ok=True)
                raise
            if into_cache and cache is not None:
                placer.place(cache.admit(build, entry.sha256, private), tmp)
            else:
                placer.note("written")
            ctx.counters.from_store += entry.size
        return tmp
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, WeightvaultError):
            raise
        raise os_error(exc, f"writing {target}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _admit_all(ctx: _Context, batch: Batch | None) -> None:
    """Make the small cache entries of this pull durable with one batch sync, then admit them:
    an entry only ever gets its cache name once its bytes are on disk."""
    if not ctx.admissions or ctx.cache is None:
        return
    from concurrent.futures import ThreadPoolExecutor

    cache = ctx.cache
    try:
        if batch is not None:
            for adm in ctx.admissions:
                batch.add(adm.temp)
            batch.sync()
        # each admission is a few metadata calls that wait on the filesystem's journal: many at once
        with ThreadPoolExecutor(SMALL_FILE_THREADS, thread_name_prefix="wv-admit") as pool:
            for fut in [pool.submit(cache.admit, a.temp, a.sha256, a.private) for a in ctx.admissions]:
                fut.result()
    except OSError as exc:
        if isinstance(exc, WeightvaultError):
            raise
        raise os_error(exc, f"adding pulled files to the cache {cache.root}") from exc
    ctx.admissions.clear()


def _drop_admissions(ctx: _Context) -> None:
    for adm in ctx.admissions:
        adm.temp.unlink(missing_ok=True)
    ctx.admissions.clear()


def _commit(staged: list[tuple[Path, Path]]) -> None:
    """Rename every staged file onto its target; on a failure put back what was renamed."""
    done: list[tuple[Path, Path | None]] = []  # (target, the replaced file's backup)
    try:
        for target, tmp in staged:
            backup: Path | None = None
            if target.exists() or target.is_symlink():
                backup = target.parent / f".{target.name}.{os.urandom(6).hex()}.wv-old"
                os.rename(target, backup)
            done.append((target, backup))
            os.replace(tmp, target)
    except BaseException as exc:
        for target, backup in reversed(done):
            with contextlib.suppress(OSError):
                if backup is not None:
                    os.replace(backup, target)
                else:
                    target.unlink(missing_ok=True)
        if isinstance(exc, OSError) and not isinstance(exc, WeightvaultError):
            raise os_error(exc, f"placing {exc.filename or 'a pulled file'}") from exc
        raise
    for _, backup in done:
        if backup is not None:
            with contextlib.suppress(OSError):
                backup.unlink()


def _stage_in_pools(
    ordered: list[PlannedFile], ctx: _Context, workers: int, staged: list[tuple[Path, Path]]
) -> None:
    """Stage every file, large ones by ``workers`` threads and small ones by a wider pool;
    appends (target, temp name) to ``staged`` for each one staged; on a failure, cancels what
    has not started and raises the first failure once the rest has stopped."""
    from concurrent.futures import ThreadPoolExecutor

    failure: BaseException | None = None
    with (
        ThreadPoolExecutor(workers, thread_name_prefix="wv-pull") as pool,
        ThreadPoolExecutor(SMALL_FILE_THREADS, thread_name_prefix="wv-pull-small") as small_pool,
    ):
        futures = [
            (p, (small_pool if p.entry.size <= SMALL_FILE else pool).submit(_stage, p, ctx))
            for p in ordered
        ]
        for item, fut in futures:
            try:
                staged.append((item.target, fut.result()))
            except BaseException as exc:
                if failure is None:
                    failure = exc
                    pool.shutdown(wait=False, cancel_futures=True)
                    small_pool.shutdown(wait=False, cancel_futures=True)
    if failure is not None:
        raise failure


def materialise(
    dest: Path | None,
    planned: list[PlannedFile],
    recipe_for: Callable[[str], FileRecipe],
    reader: ChunkReader,
    cache: FileCache | None,
    workers: int,
    progress: Callable[[int], None],
    placer: Placer,
    *,
    in_thread: bool = False,
) -> PullCounters:
    """Create ``dest`` (with its parents) and build every planned file, then place them all;
    on any failure undo everything, the folders this pull made included.

    ``in_thread``: stage the files one after another in this thread, without the pools, for a
    caller that knows each is a cached file placed by a link (a few metadata calls each)."""
    counters = PullCounters()
    staged: list[tuple[Path, Path]] = []
    created: list[Path] = []
    ctx = _Context(recipe_for, reader, cache, counters, progress, placer)
    batch: Batch | None = None
    try:
        if dest is not None:
            make_dirs(dest, created)
        for folder in sorted({p.target.parent for p in planned}, key=lambda f: len(f.parts)):
            make_dirs(folder, created)
        if cache is not None and planned and placer.copies():
            ctx.tee = True
            batch = Batch(cache.root)  # opened before the entries are written (see batch_sync)
        ordered = sorted(planned, key=lambda p: -p.entry.size)
        if in_thread:
            for item in ordered:
                staged.append((item.target, _stage(item, ctx)))
        else:
            _stage_in_pools(ordered, ctx, workers, staged)
        _admit_all(ctx, batch)
        _commit(staged)
        staged.clear()
    except BaseException:
        _drop_admissions(ctx)
        for _, tmp in staged:
            tmp.unlink(missing_ok=True)
        remove_dirs(created)
        raise
    finally:
        if batch is not None:
            batch.close()
    return counters
