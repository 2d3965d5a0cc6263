"""Making many small files (and their folders) durable at once.

An ``fsync`` per file costs a journal commit each: ten thousand small recipe objects or cache
entries waited on ten thousand commits, which cost more than hashing them. Where the OS has
``syncfs(2)`` (Linux), one call per filesystem writes every file written before it, data and
metadata, and commits the journal once; it reports a write-back error of any file on that
filesystem since the descriptor was opened, so the descriptor is opened before the files are
written (``Batch``). Elsewhere the files are fsynced one by one and their folders after them:
slower, equally durable.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from weightvault.storage import oscaps


def _fsync_path(path: str | Path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Batch:
    """Files to make durable together under ``root`` (one filesystem).

    Open it before writing the files (the write-back errors ``syncfs`` reports are those seen
    since its descriptor was opened), add each written file, then ``sync``; ``sync_dirs`` after
    renaming them makes the new names durable too.
    """

    def __init__(self, root: Path) -> None:
        self._root = root
        self._fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY) if oscaps.syncfs is not None else -1
        self._files: list[str | Path] = []
        self._dirs: set[str] = set()

    def add(self, path: str | Path) -> None:
        self._files.append(path)

    def add_dirs(self, dirs: Iterable[str | Path]) -> None:
        self._dirs.update(map(str, dirs))

    def _syncfs(self) -> bool:
        fn = oscaps.syncfs
        if fn is None or self._fd < 0:
            return False
        if fn(self._fd) != 0:
            err = ctypes_errno()
            raise OSError(err, f"syncfs: {os.strerror(err)}", str(self._root))
        return True

    def sync(self) -> None:
        """Every added file's data durable (one ``syncfs``, or an fsync per file)."""
        if not self._files:
            return
        if not self._syncfs():
            for path in self._files:
                _fsync_path(path)
        self._files.clear()

    def sync_dirs(self) -> None:
        """Every added folder's entries durable (the names of files renamed into them)."""
        if not self._dirs:
            return
        if not self._syncfs():
            for folder in sorted(self._dirs):
                _fsync_path(folder, directory=True)
        self._dirs.clear()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> Batch:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def ctypes_errno() -> int:
    import ctypes

    return ctypes.get_errno()
