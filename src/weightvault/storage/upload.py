"""Uploads into a cloud object: the parts every cloud backend shares.

Small files go up in one request; larger ones through the backend's own multi-part mechanism,
which reads ranges of the file on demand (``pread``), so memory stays bounded by the parts in
flight whatever the file size. A single-request put that is retried must not report a conflict
that its own earlier try caused.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from weightvault.core.errors import (
    InvalidInputError,
    MissingObjectError,
    ObjectExistsError,
    StorageError,
    WeightvaultError,
)
from weightvault.storage.retry import Retrier

ReadRange = Callable[[int, int], bytes]


def put_retried(
    retry: Retrier,
    key: str,
    body: bytes | bytearray,
    send: Callable[[], None],
    get: Callable[[str], bytes],
) -> None:
    """``send()`` the object under ``retry``. A retried conditional put refused because the object
    exists may have lost only the answer of an earlier try that won: the same bytes there are ours."""
    tries = 0

    def attempt() -> None:
        nonlocal tries
        tries += 1
        send()

    try:
        retry(f"put {key}", attempt)
    except ObjectExistsError:
        if tries > 1 and _holds(get, key, body):
            return
        raise


def _holds(get: Callable[[str], bytes], key: str, body: bytes | bytearray) -> bool:
    try:
        return get(key) == body
    except MissingObjectError:
        return False


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
