"""Copy-on-write clones of whole files: ``FICLONE`` on Linux, ``clonefile`` on macOS.

A clone is a new, independent inode that shares the source's data blocks until either side
is written: placing a multi-gigabyte file costs about what a hardlink costs, yet an edit of
the clone never reaches the source. Only some filesystems can do it (XFS with reflink,
btrfs, APFS); :class:`CloneUnsupportedError` says this one (or this pair) cannot, so the
caller can fall back, and any other failure is a real error.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from weightvault.storage import oscaps

#: errnos meaning "no clones here": the filesystem lacks them, the two files are on different
#: filesystems, or the ioctl is unknown. EINVAL also covers btrfs files with different COW flags.
_UNSUPPORTED = frozenset(
    {errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EINVAL, errno.ENOTTY, errno.ENOSYS}
)


def _read_umask() -> int:
    """The process umask, read once at import (reading it means setting it, which is not
    safe once threads create files)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


class CloneUnsupportedError(OSError):
    """This platform, filesystem or pair of filesystems cannot clone; copy or link instead."""


def clone_supported() -> bool:
    """Whether this OS has a clone call at all (whether a filesystem has it is found by trying)."""
    return oscaps.FICLONE is not None or oscaps.clonefile is not None


def clone_file(source: Path, target: Path, mode: int = 0o666) -> None:
    """Create ``target`` (which must not exist) as a clone of ``source``.

    The clone gets ``mode`` (less the umask) and a fresh mtime, not the source's: it is a
    new file of its own. On failure nothing is left at ``target``.
    """
    if oscaps.FICLONE is not None and oscaps.fcntl is not None:
        _ficlone(source, target, mode, oscaps.FICLONE)
    elif oscaps.clonefile is not None:  # pragma: no cover - macOS only
        _clonefile(source, target, mode)
    else:
        raise CloneUnsupportedError(errno.ENOTSUP, "no copy-on-write clones on this platform")


def _ficlone(source: Path, target: Path, mode: int, request: int) -> None:
    assert oscaps.fcntl is not None
    src = os.open(source, os.O_RDONLY)
    try:
        dst = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            oscaps.fcntl.ioctl(dst, request, src)
        except OSError as exc:
            os.close(dst)
            target.unlink(missing_ok=True)
            if exc.errno in _UNSUPPORTED:
                raise CloneUnsupportedError(exc.errno, exc.strerror) from None
            raise
        os.close(dst)
    finally:
        os.close(src)


def _clonefile(source: Path, target: Path, mode: int) -> None:  # pragma: no cover - macOS only
    import ctypes

    assert oscaps.clonefile is not None
    clone_nofollow = 0x0001
    if oscaps.clonefile(os.fsencode(source), os.fsencode(target), clone_nofollow) != 0:
        err = ctypes.get_errno()
        if err in _UNSUPPORTED:
            raise CloneUnsupportedError(err, os.strerror(err))
        raise OSError(err, os.strerror(err), str(target))
    try:  # clonefile copies the source's mode and times; the clone is a new file of its own
        os.chmod(target, mode & ~_UMASK)
        os.utime(target)
    except OSError:
        target.unlink(missing_ok=True)
        raise
