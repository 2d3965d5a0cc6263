"""Size-limited local cache of whole files, keyed by SHA-256.

A cached file is read-only and its mtime is pinned to ``CACHE_MTIME_NS``: a write through
a hardlink changes the mtime, so a tampered entry is detected without re-hashing and
dropped instead of being handed out. Recency is kept in the atime, which we set ourselves.

Two areas: ``files/`` for plain models (files 0444, folders as the umask makes them, unless
``private`` is asked for all) and ``private/`` for encrypted models: the decrypted plaintext
of an encrypted model must not be readable by other users of the machine, so that area's
folders are 0700, its files 0400, and its temp files 0600 from their first byte.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from weightvault.storage import oscaps

CACHE_MTIME_NS: Final = 1_600_000_000 * 10**9
READ_ONLY: Final = 0o444
PRIVATE_DIR: Final = 0o700
PRIVATE_FILE: Final = 0o400
PRIVATE_TEMP: Final = 0o600


@dataclass(frozen=True, slots=True)
class CacheEntry:
    sha256: str
    size: int
    last_used: float
    path: Path
    private: bool = False


class _Area:
    """One folder of entries (``<root>/<sha[:2]>/<sha>``) and its temp folder."""

    def __init__(self, files: Path, tmp: Path, private: bool) -> None:
        self.files = files
        self.tmp = tmp
        self.private = private
        self.file_mode = PRIVATE_FILE if private else READ_ONLY
        self.temp_mode = PRIVATE_TEMP if private else 0o644
        self._made: set[Path] = set()

    def mkdir(self, path: Path) -> None:
        if path in self._made:
            return
        if self.private:
            path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
            os.chmod(path, PRIVATE_DIR)  # the umask may only remove bits; an older folder may have more
        else:
            path.mkdir(parents=True, exist_ok=True)
        self._made.add(path)

    def path_for(self, sha256: str) -> Path:
        return self.files / sha256[:2] / sha256

    def intact(self, st: os.stat_result, size: int) -> bool:
        """An entry as admitted: its size, the pinned mtime, read-only with the area's mode."""
        return (
            st.st_size == size
            and st.st_mtime_ns == CACHE_MTIME_NS
            and not st.st_mode & 0o222
            and st.st_mode & 0o777 == self.file_mode
        )


class FileCache:
    """The cache under ``root``; ``private`` makes plain models' entries private too."""

    def __init__(self, root: Path, max_bytes: int, *, private: bool = False) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.all_private = private
        self._lock = threading.Lock()
        self._prefix = os.urandom(12).hex() + "-"
        self._serial = itertools.count()  # next() on a count is atomic under the GIL
        #: read once: a umask made stricter later only costs entries that fail ``usable`` (fewer bits)
        self._umask = oscaps.read_umask() if oscaps.read_umask is not None else None
        self._plain = _Area(root / "files", root / "tmp", private=False)
        self._private = _Area(root / "private" / "files", root / "private" / "tmp", private=True)
        root.mkdir(parents=True, exist_ok=True)
        self._plain.mkdir(self._plain.files)
        self._plain.mkdir(self._plain.tmp)
        self._private.mkdir(root / "private")
        self._private.mkdir(self._private.files)
        self._private.mkdir(self._private.tmp)

    def _area(self, private: bool) -> _Area:
        return self._private if private or self.all_private else self._plain

    def path_for(self, sha256: str, private: bool = False) -> Path:
        """Where an entry lives; ``private``: the entry of an encrypted model."""
        return self._area(private).path_for(sha256)

    def paths_for(self, sha256: str) -> tuple[Path, Path]:
        """Both places an entry of this content may be."""
        return self._plain.path_for(sha256), self._private.path_for(sha256)

    def usable(self, sha256: str, size: int, private: bool = False) -> Path | None:
        """The cached file if present and untouched, changing nothing (``lookup`` without its
        side effects: a caller that must decide before it writes anything asks this first)."""
        area = self._area(private)
        path = area.path_for(sha256)
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        return path if area.intact(st, size) else None

    def lookup(self, sha256: str, size: int, private: bool = False) -> Path | None:
        """The cached file if present and untouched; marks it used."""
        area = self._area(private)
        path = area.path_for(sha256)
        try:
            st = path.stat()
        except FileNotFoundError:  # the common case of a cold pull: nothing to remove either
            return None
        if not area.intact(st, size):
            # modified through a link (or chmod-ed): never hand it out
            path.unlink(missing_ok=True)
            return None
        os.utime(path, ns=(time.time_ns(), CACHE_MTIME_NS))
        return path

    def temp_file(self, private: bool = False) -> Path:
        """A new temp name: a random prefix per cache object and a counter (unique across
        processes without a random draw, a system call, per file)."""
        return self._area(private).tmp / f"{self._prefix}{next(self._serial)}.part"

    def open_entry(self, private: bool = False) -> tuple[Path, int]:
        """A new temp file for an entry, created with the entry's final mode and open for writing
        (the descriptor writes although the mode forbids it); ``seal`` it once written, then
        ``admit_sealed``. Saves the chmod and the utime by name that ``admit`` makes."""
        area = self._area(private)
        path = area.tmp / f"{self._prefix}{next(self._serial)}.part"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, area.file_mode)
        try:
            mask = self._umask
            if mask is None or area.file_mode & mask:  # the umask took bits the entry must have
                os.fchmod(fd, area.file_mode)
        except BaseException:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        return path, fd

    @staticmethod
    def seal(fd: int) -> None:
        """Pin a written entry's mtime (and mark it used) through its descriptor; no write may follow."""
        os.utime(fd, ns=(time.time_ns(), CACHE_MTIME_NS))

    def admit_sealed(self, temp: Path, sha256: str, private: bool = False) -> Path:
        """Move a temp file from ``open_entry``, written, verified and sealed, into the cache."""
        area = self._area(private)
        path = area.path_for(sha256)
        area.mkdir(path.parent)
        os.replace(temp, path)
        return path

    def temp_mode(self, private: bool = False) -> int:
        """The mode to create a temp file with (0600 for an encrypted model's plaintext)."""
        return self._area(private).temp_mode

    def admit(self, temp: Path, sha256: str, private: bool = False) -> Path:
        """Move a fully written and verified temp file into the cache."""
        area = self._area(private)
        path = area.path_for(sha256)
        area.mkdir(path.parent)
        os.chmod(temp, area.file_mode)
        os.utime(temp, ns=(time.time_ns(), CACHE_MTIME_NS))
        os.replace(temp, path)
        return path

    def fits(self, size: int) -> bool:
        return size <= self.max_bytes

    def entries(self) -> Iterator[CacheEntry]:
        for area in (self._plain, self._private):
            if not area.files.is_dir():
                continue
            for sub in area.files.iterdir():
                for entry in os.scandir(sub):
                    try:
                        st = entry.stat()
                    except FileNotFoundError:
                        continue
                    yield CacheEntry(entry.name, st.st_size, st.st_atime, Path(entry.path), area.private)

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
        for area in (self._plain, self._private):
            for entry in os.scandir(area.tmp):
                try:
                    # the change time, not the mtime: a sealed temp (``seal``) waiting for its batch
                    # sync has the cache's pinned mtime of 2020 but was written just now
                    if entry.stat().st_ctime < older_than:
                        os.unlink(entry.path)
                        n += 1
                except FileNotFoundError:
                    continue
        return n
