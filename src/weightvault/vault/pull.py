"""Materialising a version into a folder: placed from the cache (``placement``), else rebuilt and verified.

A pull is all or nothing. Conflicts with existing files are found before the first byte is
written; every file is then built under a temporary name beside its destination (through the
cache when it fits) and verified; only when all of them are ready are they renamed into place.
If anything fails, the temporary files and the folders the pull created are removed and files
it replaced are put back: the destination is left as it was.

A destination that does not exist yet is built whole in a sibling staging folder
(``.NAME.XXXX.wv-tmp``), each file under its own name there, and renamed into place once: no
temporary name, rename and existence checks per file (most of a 10,000-file pull's system
calls). Nothing appears under the final name until every file is built and verified.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import hashlib
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, cast

from weightvault.core.errors import (
    DestinationConflictError,
    UnsafePathError,
    WeightvaultError,
)
from weightvault.core.manifest import FileEntry, FileRecipe
from weightvault.core.types import PullResult, VersionInfo
from weightvault.storage.batch_sync import Batch
from weightvault.storage.oserror import os_error
from weightvault.vault.cache import FileCache
from weightvault.vault.placement import Placer

if TYPE_CHECKING:  # the reader loads the index (SQLAlchemy): a warm pull from the cache needs neither
    from weightvault.cas.pack import Writable
    from weightvault.vault.reader import ChunkReader

# Imported where a file is built, never at the top: thread pools (``concurrent.futures`` loads
# ``logging``), the O_DIRECT writer and ``shutil`` are what a pull that only links cached files
# does not run, yet they cost it more start-up than its own work (``vault.lightpull``).

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


def unmatched_includes(files: Sequence[FileEntry], include: Sequence[str] | None) -> tuple[str, ...]:
    """The ``include`` patterns that match no file of the version (the CLI warns of them)."""
    return tuple(p for p in include or () if not any(fnmatch.fnmatchcase(f.path, p) for f in files))


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
    if not os.path.lexists(dest):  # a new folder: nothing in it to conflict with or to lead elsewhere
        return [PlannedFile(entry, dest.joinpath(*entry.path.split("/"))) for entry in files]
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
    #: add the files rebuilt from the store to the cache (``vault.cachefill``); else each is
    #: written once, straight into its destination
    fill: bool = True
    #: placing a cached file would copy it: write the destination in the same pass instead
    tee: bool = False
    #: small cache entries written in that pass, made durable together at the end of the pull
    admissions: list[_Admission] = field(default_factory=list)


def _open_small(path: Path, mode: int) -> BinaryIO:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    return open(fd, "wb")


class _FdWriter:
    """Unbuffered writes to a descriptor it owns: a few KiB written in one or two calls need no
    buffered file object (whose set-up alone is an fstat, an ioctl and an lseek per file)."""

    __slots__ = ("fd",)

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def write(self, data: bytes | bytearray | memoryview, /) -> int:
        view = memoryview(data)
        size = len(view)
        while view:
            view = view[os.write(self.fd, view) :]
        return size

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)


def _create(path: Path, mode: int) -> _FdWriter:
    """A new file (it must not exist: temp and staged names are fresh) open for writing."""
    return _FdWriter(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode))


def _build_tee(item: PlannedFile, recipe: FileRecipe, ctx: _Context, out_path: Path) -> None:
    """Rebuild a file into its cache entry and its destination at once (the copy a placement
    would make, without reading the entry back). A small entry is not fsynced here: it joins
    the cache after the batch sync at the end of the pull (``materialise``)."""
    from weightvault.storage.direct_io import DirectWriter

    cache = ctx.cache
    assert cache is not None
    entry, private = item.entry, ctx.placer.private
    if entry.size > SMALL_FILE:
        build = cache.temp_file(private)
        try:
            mode = cache.temp_mode(private)
            with DirectWriter(build, mode) as out, DirectWriter(out_path, COPY_MODE) as copy:
                ctx.reader.write_file(recipe, _Tee(out, copy), entry.path, ctx.progress)
                copy.close(sync=False)  # a pulled copy is as durable as a placed one: not synced
            cache.admit(build, entry.sha256, private)
        except BaseException:
            build.unlink(missing_ok=True)
            raise
    else:  # the entry is created with its final mode and sealed by descriptor: admitted by a rename
        build, fd = cache.open_entry(private)
        entry_out = _FdWriter(fd)
        try:
            dest_out = _create(out_path, COPY_MODE)
            try:
                ctx.reader.write_file(recipe, _Tee(entry_out, dest_out), entry.path, ctx.progress)
            finally:
                dest_out.close()
            cache.seal(fd)
            entry_out.close()
        except BaseException:
            entry_out.close()
            build.unlink(missing_ok=True)
            raise
        ctx.admissions.append(_Admission(build, entry.sha256, private))
    ctx.placer.note("copy")


def _build_direct(entry: FileEntry, recipe: FileRecipe, ctx: _Context, out_path: Path) -> None:
    """Rebuild a file straight into its destination, the one write of a pull that does not fill
    the cache. Not fsynced, as a copy placed from the cache is not: the destination is the
    user's folder, and ``cp`` does not sync either; verified all the same (``write_file``)."""
    if entry.size > SMALL_FILE:
        from weightvault.storage.direct_io import DirectWriter

        with DirectWriter(out_path, COPY_MODE) as out:
            ctx.reader.write_file(recipe, out, entry.path, ctx.progress)
            out.close(sync=False)
    else:  # no aligned buffers to set up for a few KiB
        small = _create(out_path, COPY_MODE)
        try:
            ctx.reader.write_file(recipe, small, entry.path, ctx.progress)
        finally:
            small.close()


def _build(item: PlannedFile, ctx: _Context, out_path: Path) -> None:
    """Build one file, verified, at ``out_path``: a temporary name beside its target, or its own
    name in a staging folder (a name nothing else uses: it is created, never replaced).

    ``ctx.placer`` puts cached files there (and counts how); ``placer.private`` says whether the
    model's cache entries are private (an encrypted model's plaintext)."""
    entry = item.entry
    cache, placer, progress = ctx.cache, ctx.placer, ctx.progress
    private = placer.private
    try:
        source = cache.lookup(entry.sha256, entry.size, private) if cache is not None else None
        if source is not None:
            placer.place(source, out_path)
            ctx.counters.from_cache += entry.size
            progress(entry.size)
            return
        recipe = ctx.recipe_for(entry.sha256)
        if cache is None or not ctx.fill or not cache.fits(entry.size):
            _build_direct(entry, recipe, ctx, out_path)
            placer.note("written")
            ctx.counters.from_store += entry.size
            return
        if ctx.tee:
            _build_tee(item, recipe, ctx, out_path)
            ctx.counters.from_store += entry.size
            return
        build = cache.temp_file(private)
        mode = cache.temp_mode(private)
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
        placer.place(cache.admit(build, entry.sha256, private), out_path)
        ctx.counters.from_store += entry.size
    except OSError as exc:
        out_path.unlink(missing_ok=True)
        if isinstance(exc, WeightvaultError):
            raise
        raise os_error(exc, f"writing {item.target}") from exc
    except BaseException:
        out_path.unlink(missing_ok=True)
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
            for fut in [pool.submit(cache.admit_sealed, a.temp, a.sha256, a.private) for a in ctx.admissions]:
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


def _run(jobs: list[tuple[PlannedFile, Path]], ctx: _Context, workers: int, in_thread: bool) -> None:
    """Build every job, the largest first, small files in their own wider pool; the first failure
    cancels what has not started and is raised once every started job has finished.
    ``in_thread``: one after another in this thread, no pool (see ``materialise``)."""
    ordered = sorted(jobs, key=lambda job: -job[0].entry.size)
    if in_thread:
        for p, path in ordered:
            _build(p, ctx, path)
        return
    from concurrent.futures import ThreadPoolExecutor

    failure: BaseException | None = None
    with (
        ThreadPoolExecutor(workers, thread_name_prefix="wv-pull") as pool,
        ThreadPoolExecutor(SMALL_FILE_THREADS, thread_name_prefix="wv-pull-small") as small_pool,
    ):
        futures = [
            (small_pool if p.entry.size <= SMALL_FILE else pool).submit(_build, p, ctx, path)
            for p, path in ordered
        ]
        for fut in futures:
            try:
                fut.result()
            except BaseException as exc:
                if failure is None:
                    failure = exc
                    pool.shutdown(wait=False, cancel_futures=True)
                    small_pool.shutdown(wait=False, cancel_futures=True)
    if failure is not None:
        raise failure


def _temp_beside(target: Path, prefix: str, n: int) -> Path:
    return target.parent / f".{target.name}.{prefix}{n}.wv-tmp"


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
    fill: bool,
    in_thread: bool = False,
) -> PullCounters:
    """Create ``dest`` (with its parents) and build every planned file, then place them all;
    on any failure undo everything, the folders this pull made included.

    ``fill``: add the files rebuilt from the store to ``cache`` (``vault.cachefill.fills_cache``);
    cached files are placed from it either way. ``in_thread``: build the files one after another
    in this thread, without the pools, for a caller that knows each is a cached file placed by a
    link (a few metadata calls each)."""
    ctx = _Context(recipe_for, reader, cache, PullCounters(), progress, placer, fill)
    if dest is not None and planned and not os.path.lexists(dest):
        return _materialise_new(dest, planned, ctx, workers, in_thread)
    created: list[Path] = []
    prefix = os.urandom(6).hex()
    jobs = [(p, _temp_beside(p.target, prefix, i)) for i, p in enumerate(planned)]
    batch: Batch | None = None
    try:
        if dest is not None:
            make_dirs(dest, created)
        for folder in sorted({p.target.parent for p in planned}, key=lambda f: len(f.parts)):
            make_dirs(folder, created)
        batch = _tee_batch(ctx, planned)
        _run(jobs, ctx, workers, in_thread)
        _admit_all(ctx, batch)
        _commit([(p.target, tmp) for p, tmp in jobs])
    except BaseException:
        _drop_admissions(ctx)
        for _, tmp in jobs:
            tmp.unlink(missing_ok=True)
        remove_dirs(created)
        raise
    finally:
        if batch is not None:
            batch.close()
    return ctx.counters


def _tee_batch(ctx: _Context, planned: list[PlannedFile]) -> Batch | None:
    """When the files rebuilt from the store go to the cache and the placement copies: write
    each cache entry and the user's copy in one pass (``ctx.tee``), the entries made durable
    together by the returned batch (opened before they are written, see ``batch_sync``)."""
    if not (ctx.fill and ctx.cache is not None and planned and ctx.placer.copies()):
        return None
    ctx.tee = True
    return Batch(ctx.cache.root)


def _materialise_new(
    dest: Path, planned: list[PlannedFile], ctx: _Context, workers: int, in_thread: bool
) -> PullCounters:
    """``materialise`` into a folder that does not exist yet: build it whole as a sibling staging
    folder, every file under its own name, then rename that folder to ``dest`` (one rename
    instead of one per file). A failure removes the staging folder and the parents this pull
    made; a crash can leave only the staging folder, under its ``.wv-tmp`` name."""
    created: list[Path] = []
    staging = dest.parent / f".{dest.name}.{os.urandom(6).hex()}.wv-tmp"
    made_staging = False
    batch: Batch | None = None
    try:
        make_dirs(dest.parent, created)
        try:
            staging.mkdir()
        except OSError as exc:
            raise os_error(exc, f"creating folder {staging}") from exc
        made_staging = True
        jobs = [(p, staging.joinpath(*p.entry.path.split("/"))) for p in planned]
        for folder in sorted({path.parent for _, path in jobs}, key=lambda f: len(f.parts)):
            if folder != staging:
                make_dirs(folder, [])  # removed with the staging folder
        batch = _tee_batch(ctx, planned)
        _run(jobs, ctx, workers, in_thread)
        _admit_all(ctx, batch)
        try:
            # onto nothing, or onto an empty folder made meanwhile; a folder with anything in
            # it, or a file, refuses (ENOTEMPTY, EEXIST, ENOTDIR, EISDIR)
            os.rename(staging, dest)
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
                raise DestinationConflictError(
                    f"{dest} appeared while the pull was running; nothing was written to it"
                ) from None
            raise os_error(exc, f"renaming {staging} to {dest}") from exc
        made_staging = False
    except BaseException:
        _drop_admissions(ctx)
        if made_staging:
            import shutil

            shutil.rmtree(staging, ignore_errors=True)
        remove_dirs(created)
        raise
    finally:
        if batch is not None:
            batch.close()
    return ctx.counters


def build_version(
    dest: Path | None,
    planned: list[PlannedFile],
    recipes: Mapping[str, FileRecipe],
    recipe_for: Callable[[str], FileRecipe],
    reader: ChunkReader | None,
    cache: FileCache | None,
    workers: int,
    progress: Callable[[int], None],
    placer: Placer,
    *,
    fill: bool,
    complete: bool = False,
    in_thread: bool = False,
) -> PullCounters:
    """``materialise`` the planned files, the chunks of ``recipes`` (those known ahead) located in
    one pass over the index (per file, a 10,000-file pull spent most of its CPU in queries).

    ``reader`` None: the caller knows every file is in the cache (``recipe_for`` refuses any
    other). ``complete``: see ``ChunkReader.with_locations``; ``fill`` and ``in_thread``: see
    ``materialise``."""
    chunk_ids = [cid for r in recipes.values() for cid, _n in r.chunks]
    view = reader.with_locations(chunk_ids, complete=complete) if reader is not None and chunk_ids else reader
    try:
        return materialise(
            dest,
            planned,
            recipe_for,
            cast("ChunkReader", view),  # None only when no file is read (see above)
            cache,
            workers,
            progress,
            placer,
            fill=fill,
            in_thread=in_thread,
        )
    finally:
        if view is not reader and view is not None:
            view.close()


def pull_result(
    info: VersionInfo,
    files: Sequence[FileEntry],
    counters: PullCounters,
    started: float,
    unmatched: tuple[str, ...],
    placer: Placer,
    fallbacks: tuple[str, ...] = (),
) -> PullResult:
    """What a pull reports: the files selected, where their bytes came from, how they were placed."""
    return PullResult(
        version=info,
        files=tuple(f.path for f in files),
        bytes_total=sum(f.size for f in files),
        bytes_from_cache=counters.from_cache,
        bytes_from_store=counters.from_store,
        seconds=time.perf_counter() - started,
        fallbacks=fallbacks,
        unmatched_includes=unmatched,
        link_mode=placer.mode,
        placement=dict(placer.counts),
    )
