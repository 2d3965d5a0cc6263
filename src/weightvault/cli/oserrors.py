"""An operating-system error the lower layers did not translate, as one line and an exit code.

Most OS errors are translated where they happen (``storage.local.os_error`` names the path);
this is the last net, so that no errno ever reaches the user as a traceback.
"""

from __future__ import annotations

import errno

from weightvault.core.errors import (
    ERROR_TABLE,
    DiskFullError,
    InvalidInputError,
    NotFoundError,
    StorageError,
)

_FAMILY = {
    errno.ENOSPC: DiskFullError,
    errno.EDQUOT: DiskFullError,
    errno.ENOENT: NotFoundError,
    errno.ELOOP: InvalidInputError,
    errno.ENAMETOOLONG: InvalidInputError,
}


def describe_os_error(exc: OSError) -> tuple[str, int]:
    """(``"<what went wrong>: <path>"``, exit code of its family; storage by default)."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    paths = [p for p in (exc.filename, exc.filename2) if p is not None]
    text = reason + (": " + " -> ".join(str(p) for p in paths) if paths else "")
    family = _FAMILY.get(exc.errno or 0, StorageError)
    return text, ERROR_TABLE[family][0]
