"""Size-limited local cache of whole files, keyed by SHA-256, placed by hardlink.

A cached file is read-only and its mtime is pinned to ``CACHE_MTIME_NS``: a write through
a hardlink changes the mtime, so a tampered entry is detected without re-hashing and
dropped instead of being handed out. Recency is kept in the atime, which we set ourselves.
"""

from __future__ import annotations

import errno
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from weightvault.storage.local import os_error

CACHE_MTIME_NS = 1_600_000_000 * 10**9
READ_ONLY = 0o444


@dataclass(frozen=True, slots=True)
class CacheEntry:
    sha256: str
    size: int
    last_used: float
    path: Path


class FileCache:
    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self._files = root / "files"
        self._tmp = root / "tmp"
        self._lock = threading.Lock()
        self._files.mkdir(parents=True, exist_ok=True)
        self._tmp.mkdir(parents=True, exist_ok=True)

    def path_for(self, sha256: str) -> Path:
        return self._files / sha256[:2] / sha256

    def lookup(self, sha256: str, size: int) -> Path | None:
        """The cached file if present and untouched; marks it used."""
        path = self.path_for(sha256)
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        if st.st_size != size or st.st_mtime_ns != CACHE_MTIME_NS or st.st_mode & 0o222:
            path.unlink(missing_ok=True)  # modified through a link: never hand it out
            return None
        os.utime(path, ns=(time.time_ns(), CACHE_MTIME_NS))
        return path

    def temp_file(self) -> Path:
        return self._tmp / f"{uuid.uuid4().hex}.part"

    def admit(self, temp: Path, sha256: str) -> Path:
        """Move a fully written and verified temp file into the cache."""
        path = self.path_for(sha256)
        path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(temp, READ_ONLY)
        os.utime(temp, ns=(time.time_ns(), CACHE_MTIME_NS))
        os.replace(temp, path)
        return path

    def fits(self, size: int) -> bool:
        return size <= self.max_bytes

    def entries(self) -> Iterator[CacheEntry]:
        for sub in self._files.iterdir() if self._files.is_dir() else ():
            for entry in os.scandir(sub):
                try:
                    st = entry.stat()
                except FileNotFoundError:
                    continue
                yield CacheEntry(entry.name, st.st_size, st.st_atime, Path(entry.path))

    def total_bytes(self) -> int:
        return sum(e.size for e in self.entries())

    def prune(self, max_bytes: int | None = None, keep: frozenset[str] = frozenset()) -> tuple[int, int]:
        """Evict least recently used entries until the cache fits; returns (files, bytes) removed."""
        limit = self.max_bytes if max_bytes is None else max_bytes
        with self._lock:
            entries = sorted(self.entries(), key=lambda e: e.last_used)
            total = sum(e.size for e in entries)
            removed = freed = 0
            for entry in entries:
                if total <= limit:
                    break
                if entry.sha256 in keep:
                    continue
                entry.path.unlink(missing_ok=True)
                total -= entry.size
                removed += 1
                freed += entry.size
            return removed, freed

    def clean_temp(self, older_than: float) -> int:
        n = 0
        for entry in os.scandir(self._tmp):
            try:
                if entry.stat().st_mtime < older_than:
                    os.unlink(entry.path)
                    n += 1
            except FileNotFoundError:
                continue
        return n


def place(source: Path, target_tmp: Path) -> bool:
    """Hardlink ``source`` at ``target_tmp``; copy when links cannot cross. True if linked."""
    try:
        os.link(source, target_tmp)
        return True
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
            raise os_error(exc, f"linking {target_tmp}") from exc
    try:
        shutil.copyfile(source, target_tmp)
    except OSError as exc:
        target_tmp.unlink(missing_ok=True)
        raise os_error(exc, f"copying to {target_tmp}") from exc
    os.chmod(target_tmp, READ_ONLY)
    return False
