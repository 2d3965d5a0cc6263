"""What this operating system offers beyond POSIX, found once at import and read at call time.

Linux-only paths (``O_DIRECT``, ``fcntl`` flags, the ``FICLONE`` ioctl) and the macOS-only
``clonefile`` are looked up here, never imported or referenced unguarded elsewhere, so the same
code runs on macOS, where ``os.O_DIRECT`` does not exist. Callers read the module attributes
when they run (``oscaps.O_DIRECT``), which is what lets the tests switch the Linux paths off
(:func:`portable_values`) and run the vault on its fallbacks, as it runs on macOS.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any, Final

_fcntl: ModuleType | None
try:  # POSIX only; absent on Windows
    import fcntl as _fcntl
except ImportError:  # pragma: no cover - not on the platforms we test
    _fcntl = None

LINUX: Final = sys.platform.startswith("linux")
DARWIN: Final = sys.platform == "darwin"
#: native Windows: not supported (WSL 2 is Linux); checked once, at the start, by :func:`check_platform`
WINDOWS: bool = sys.platform == "win32"

#: ``os.O_DIRECT`` where the OS has it (Linux); 0 means "not available".
O_DIRECT: int = getattr(os, "O_DIRECT", 0)
#: the ``fcntl`` module where it exists (POSIX), else None.
fcntl: ModuleType | None = _fcntl
#: the ``FICLONE`` ioctl request (Linux: XFS with reflink, btrfs, bcachefs, OCFS2), else None.
#: Python 3.12 names it ``fcntl.FICLONE``; 3.11 does not, hence the value of ``_IOW(0x94, 9, int)``.
FICLONE: int | None = getattr(_fcntl, "FICLONE", 0x40049409) if LINUX and _fcntl is not None else None
#: macOS ``F_NOCACHE`` (the nearest thing to O_DIRECT there), else None.
F_NOCACHE: int | None = getattr(_fcntl, "F_NOCACHE", None) if DARWIN else None

ClonefileFn = Callable[[bytes, bytes, int], int]


def _load_clonefile() -> ClonefileFn | None:
    """``int clonefile(const char *src, const char *dst, uint32_t flags)`` from libSystem (APFS)."""
    if not DARWIN:
        return None
    import ctypes  # pragma: no cover - macOS only
    import ctypes.util  # pragma: no cover

    try:  # pragma: no cover
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libSystem.dylib", use_errno=True)
        fn: Any = libc.clonefile
    except (OSError, AttributeError):  # pragma: no cover - macOS before 10.12
        return None
    fn.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_uint32)  # pragma: no cover
    fn.restype = ctypes.c_int  # pragma: no cover
    return fn  # type: ignore[no-any-return]  # pragma: no cover


#: macOS ``clonefile(2)`` through ctypes, else None (looked up on first use: ``__getattr__``).
clonefile: ClonefileFn | None

SyncfsFn = Callable[[int], int]


def _load_syncfs() -> SyncfsFn | None:
    """``int syncfs(int fd)`` from the C library (Linux): one journal commit for many files."""
    if not LINUX:
        return None  # pragma: no cover - Linux is where the tests run
    import ctypes

    try:  # the symbols already loaded (the C library Python runs on): no library search,
        # which ``ctypes.util.find_library`` does by running ``ldconfig``
        fn: Any = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):  # pragma: no cover - a C library without it
        return None
    fn.argtypes = (ctypes.c_int,)
    fn.restype = ctypes.c_int
    return fn  # type: ignore[no-any-return]


#: Linux ``syncfs(2)`` through ctypes, else None (then files are fsynced one by one); looked up
#: on first use (``__getattr__``).
syncfs: SyncfsFn | None

#: the attributes found through ctypes, and how: only on first use, since ``ctypes`` (and, for
#: ``find_library``, ``ctypes.util``, which imports ``subprocess`` and ``tempfile``) costs a
#: command that never syncs a batch (a warm pull, a listing) more than its own work
_LAZY: Final[dict[str, Callable[[], Any]]] = {"syncfs": _load_syncfs, "clonefile": _load_clonefile}


def __getattr__(name: str) -> Any:
    """A lazy attribute, looked up once and then an ordinary one (which a test may replace)."""
    load = _LAZY.get(name)
    if load is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return globals().setdefault(name, load())


UmaskFn = Callable[[], int | None]


def _read_umask() -> int | None:
    """This process's umask without changing it (``os.umask`` can only be read by setting it,
    which races with other threads creating files): Linux reports it in ``/proc/self/status``
    (since 4.7). ``None`` where it cannot be read."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        return None
    return None


#: reads the process umask (Linux), else None: callers then set modes explicitly.
read_umask: UmaskFn | None = _read_umask if LINUX else None


def check_platform() -> None:
    """Stop at the start, with one clear line, where the vault cannot work (native Windows)."""
    if WINDOWS:
        from weightvault.core.errors import ConfigError

        raise ConfigError(
            "native Windows is not supported: run weightvault in WSL 2 (see the README's Platforms)"
        )


def portable_values() -> dict[str, Any]:
    """The values these attributes have on a POSIX system without the Linux extras (macOS
    without APFS clones): set them all (``monkeypatch.setattr``) to run on the fallbacks."""
    return {
        "O_DIRECT": 0,
        "fcntl": None,
        "FICLONE": None,
        "F_NOCACHE": None,
        "clonefile": None,
        "syncfs": None,
        "read_umask": None,
    }


#: ``WEIGHTVAULT_PORTABLE=1`` starts a process on the fallbacks (the tests' portable mode uses it
#: for the processes they start; a user may use it to rule out O_DIRECT or clones when debugging).
PORTABLE_ENV: Final = "WEIGHTVAULT_PORTABLE"
if os.environ.get(PORTABLE_ENV) == "1":
    globals().update(portable_values())
