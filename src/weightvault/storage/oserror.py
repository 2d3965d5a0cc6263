"""An ``OSError`` from the filesystem as one of our errors, a full disk kept distinct.

Apart from ``storage.local`` (which re-exports it) so that code placing files from the cache
(``vault.placement``, ``vault.pull``) names its errors without loading the local backend and
its thread pools: a warm pull imports nothing it does not run.
"""

from __future__ import annotations

import errno

from weightvault.core.errors import DiskFullError, StorageError


def os_error(exc: OSError, what: str) -> StorageError:
    """Map an OSError to our hierarchy, keeping a full disk distinct."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFullError(f"disk full while {what}")
    return StorageError(f"{what}: {exc.strerror or exc}")
