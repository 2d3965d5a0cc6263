"""Streaming a local file into a cloud object: the part every cloud backend shares.

Small files go up in one request; larger ones through the backend's own multi-part mechanism,
which reads ranges of the file on demand (``pread``), so memory stays bounded by the parts in
flight whatever the file size.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from weightvault.core.errors import InvalidInputError, StorageError, WeightvaultError

ReadRange = Callable[[int, int], bytes]


def put_file_in_parts(
    provider: str,
    key: str,
    path: Path,
    *,
    consume: bool,
    single_request_limit: int,
    put_bytes: Callable[[bytes], None],
    put_parts: Callable[[int, ReadRange], None],
) -> None:
    """``put_bytes(data)`` for files up to the limit, else ``put_parts(size, read_range)``."""
    src = Path(path)
    try:
        size = src.stat().st_size
        if size <= single_request_limit:
            put_bytes(src.read_bytes())
        else:
            fd = os.open(src, os.O_RDONLY)
            try:
                put_parts(size, lambda off, n: os.pread(fd, n, off))
            finally:
                os.close(fd)
    except FileNotFoundError as exc:
        raise InvalidInputError(f"{provider}: put_file {key}: source {src} does not exist") from exc
    except WeightvaultError:
        raise
    except OSError as exc:
        raise StorageError(f"{provider}: put_file {key}: reading {src}: {exc}") from exc
    if consume:
        src.unlink(missing_ok=True)
