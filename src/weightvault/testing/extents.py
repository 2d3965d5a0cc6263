"""A file's extent map through the ``FS_IOC_FIEMAP`` ioctl (Linux): which blocks it uses, and
which of them it shares with another file, which is how a test sees that a clone is a clone."""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from weightvault.storage import oscaps

FS_IOC_FIEMAP: Final = 0xC020660B  # _IOWR('f', 11, struct fiemap)
FIEMAP_FLAG_SYNC: Final = 0x1
FIEMAP_EXTENT_LAST: Final = 0x1
FIEMAP_EXTENT_SHARED: Final = 0x2000
_HEAD = struct.Struct("=QQIIII")  # fm_start, fm_length, fm_flags, fm_mapped_extents, fm_extent_count, pad
_EXTENT = struct.Struct("=QQQQQIIII")  # logical, physical, length, 2 reserved, flags, 3 reserved
_BATCH: Final = 256


@dataclass(frozen=True, slots=True)
class Extent:
    logical: int
    physical: int
    length: int
    flags: int

    @property
    def shared(self) -> bool:
        return bool(self.flags & FIEMAP_EXTENT_SHARED)


def extents(path: Path) -> list[Extent]:
    """Every extent of ``path`` (its data synced first so delayed allocation has placed it)."""
    if oscaps.fcntl is None or not oscaps.LINUX:
        raise OSError("FIEMAP needs Linux")
    out: list[Extent] = []
    fd = os.open(path, os.O_RDONLY)
    try:
        start = 0
        while True:
            buf = bytearray(_HEAD.size + _BATCH * _EXTENT.size)
            _HEAD.pack_into(buf, 0, start, (1 << 64) - 1 - start, FIEMAP_FLAG_SYNC, 0, _BATCH, 0)
            oscaps.fcntl.ioctl(fd, FS_IOC_FIEMAP, buf, True)
            mapped = _HEAD.unpack_from(buf, 0)[3]
            if mapped == 0:
                return out
            for i in range(mapped):
                logical, physical, length, _, _, flags, *_ = _EXTENT.unpack_from(
                    buf, _HEAD.size + i * _EXTENT.size
                )
                out.append(Extent(logical, physical, length, flags))
            last = out[-1]
            if last.flags & FIEMAP_EXTENT_LAST:
                return out
            start = last.logical + last.length
    finally:
        os.close(fd)


def physical_ranges(path: Path) -> list[tuple[int, int, int]]:
    """(logical, physical, length) of every extent: equal lists mean the same blocks."""
    return [(e.logical, e.physical, e.length) for e in extents(path)]
