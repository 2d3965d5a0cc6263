"""A throw-away XFS filesystem with reflink in a loop-mounted image file (Linux, root).

The tests and benchmarks need a filesystem with copy-on-write clones on machines whose disks
have none (ext4). ``xfs_mount`` makes a sparse image, formats it ``mkfs.xfs -m reflink=1``,
mounts it with ``mount -o loop`` and always unmounts it and deletes the image afterwards.
Where that cannot be done (not Linux, not root, no ``mkfs.xfs``, loop mounts not allowed)
it raises :class:`LoopMountUnavailableError` with the reason, for a skip message.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from weightvault.storage import oscaps


class LoopMountUnavailableError(RuntimeError):
    """A loop-mounted filesystem cannot be made here; the message says why."""


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


def _unmount(mountpoint: Path) -> None:
    for _ in range(20):
        if _run("umount", str(mountpoint)).returncode == 0:
            return
        time.sleep(0.25)  # something still has a file open there (a straggling thread)
    _run("umount", "-l", str(mountpoint))  # detach now; the kernel finishes when it is free


@contextlib.contextmanager
def xfs_mount(workdir: Path, size_mb: int = 512) -> Iterator[Path]:
    """Yield the mount point of a fresh XFS filesystem with reflink, made under ``workdir``."""
    if not oscaps.LINUX:
        raise LoopMountUnavailableError("loop-mounted XFS needs Linux")
    if os.geteuid() != 0:
        raise LoopMountUnavailableError("loop mounts need root (mount -o loop)")
    mkfs = shutil.which("mkfs.xfs") or shutil.which("mkfs.xfs", path="/usr/sbin:/sbin")
    if mkfs is None:
        raise LoopMountUnavailableError(
            "mkfs.xfs not found: install xfsprogs (scripts/install-test-tools.sh)"
        )
    workdir.mkdir(parents=True, exist_ok=True)
    image, mountpoint = workdir / "xfs.img", workdir / "xfs"
    with open(image, "wb") as f:
        f.truncate(size_mb << 20)  # sparse: costs only what is written
    try:
        made = _run(mkfs, "-q", "-f", "-m", "reflink=1", str(image))
        if made.returncode != 0:
            raise LoopMountUnavailableError(f"mkfs.xfs -m reflink=1 failed: {made.stderr.strip()}")
        mountpoint.mkdir(exist_ok=True)
        mounted = _run("mount", "-o", "loop", str(image), str(mountpoint))
        if mounted.returncode != 0:
            raise LoopMountUnavailableError(f"loop mounts are not allowed here: {mounted.stderr.strip()}")
        try:
            yield mountpoint
        finally:
            _unmount(mountpoint)
    finally:
        image.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            mountpoint.rmdir()
