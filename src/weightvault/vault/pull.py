"""Materialising a version into a folder: placed from the cache (``placement``), else rebuilt and verified.

Nothing half-written ever carries a final name: each file is built under a temporary name
(in the cache, or beside its destination) and renamed once its SHA-256 matched. Conflicts
with existing files are found before the first byte is written.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from weightvault.core.errors import (
    DestinationConflictError,
    InvalidInputError,
    UnsafePathError,
    WeightvaultError,
)
from weightvault.core.manifest import FileEntry, FileRecipe
from weightvault.storage.direct_io import DirectWriter
from weightvault.storage.local import os_error
from weightvault.vault.cache import FileCache
from weightvault.vault.placement import Placer
from weightvault.vault.reader import ChunkReader


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


def materialise(
    planned: list[PlannedFile],
    recipe_for: Callable[[str], FileRecipe],
    reader: ChunkReader,
    cache: FileCache | None,
    workers: int,
    progress: Callable[[int], None],
    placer: Placer,
) -> PullCounters:
    """Build every planned file; ``placer`` puts cached files in place (and counts how), and
    says whether the model's cache entries are private (an encrypted model's plaintext)."""
    counters = PullCounters()
    private = placer.private

    def one(item: PlannedFile) -> None:
        entry, target = item.entry, item.target
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".{target.name}.{uuid.uuid4().hex[:12]}.wv-tmp"
        try:
            source = cache.lookup(entry.sha256, entry.size, private) if cache is not None else None
            if source is not None:
                placer.place(source, tmp)
                counters.from_cache += entry.size
                progress(entry.size)
            else:
                recipe = recipe_for(entry.sha256)
                into_cache = cache is not None and cache.fits(entry.size)
                build = cache.temp_file(private) if into_cache and cache is not None else tmp
                mode = cache.temp_mode(private) if into_cache and cache is not None else 0o644
                try:
                    with DirectWriter(build, mode) as out:
                        reader.write_file(recipe, out, entry.path, progress)
                except BaseException:
                    build.unlink(missing_ok=True)
                    raise
                if into_cache and cache is not None:
                    placer.place(cache.admit(build, entry.sha256, private), tmp)
                else:
                    placer.note("written")
                counters.from_store += entry.size
            os.replace(tmp, target)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            if isinstance(exc, WeightvaultError):
                raise
            raise os_error(exc, f"writing {target}") from exc
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    ordered = sorted(planned, key=lambda p: -p.entry.size)
    with ThreadPoolExecutor(workers, thread_name_prefix="wv-pull") as pool:
        for fut in [pool.submit(one, p) for p in ordered]:
            fut.result()
    return counters


def check_dest_parent(dest: Path) -> None:
    if not dest.parent.exists():
        raise InvalidInputError(f"parent folder of destination {dest} does not exist")
