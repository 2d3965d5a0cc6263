"""Receiving one file's bytes fast: large reads straight from the socket, consumed on a second thread.

A pull is bound by the client: parsing the body through httpx reads 64 KiB at a time through
h11, and hashing inline stalls the socket while SHA-256 runs. Here the body is read with
``readinto`` into a few reused 1 MiB buffers (``http.client``, no per-read allocation) while a
second thread hashes and writes the previous buffer (``hashlib`` and file writes release the
GIL), so network and SHA-256 overlap. Memory per download is ``DEPTH`` buffers, whatever the
file size. Through an HTTP proxy (which ``http.client`` does not read from the environment) the
body is read through httpx instead.
"""

from __future__ import annotations

import contextlib
import http.client
import queue
import ssl
import threading
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import certifi
import httpx

from weightvault.core.errors import BackendUnavailableError, WeightvaultError

BLOCK = 1 << 20
#: buffers per download: one being filled from the socket, the others hashed/written or queued
DEPTH = 3

Consume = Callable[[memoryview], None]
ErrorOf = Callable[[int, bytes, str], WeightvaultError]


@dataclass(frozen=True, slots=True)
class Received:
    status: int
    #: bytes handed to ``consume``
    size: int


class _Consumer:
    """Runs ``consume`` on its own thread over buffers handed to it in order; recycles them."""

    def __init__(self, consume: Consume, block: int, depth: int) -> None:
        self._consume = consume
        self.free: queue.Queue[bytearray] = queue.Queue()
        for _ in range(depth):
            self.free.put(bytearray(block))
        self._full: queue.Queue[tuple[bytearray, int] | None] = queue.Queue()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="wv-receive", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._full.get()) is not None:
            buf, n = item
            if self.error is None:
                try:
                    self._consume(memoryview(buf)[:n])
                except BaseException as exc:  # raised on the reading thread at its next step
                    self.error = exc
            self.free.put(buf)

    def put(self, buf: bytearray, n: int) -> None:
        self._full.put((buf, n))

    def finish(self) -> None:
        """Wait for every queued buffer to be consumed; raise what ``consume`` raised."""
        self._full.put(None)
        self._thread.join()
        if self.error is not None:
            raise self.error


def _proxied(url: str) -> bool:
    scheme, host = urlsplit(url).scheme, urlsplit(url).hostname or ""
    return scheme in urllib.request.getproxies() and not urllib.request.proxy_bypass(host)


def get(
    url: str,
    headers: dict[str, str],
    consume: Consume,
    error_of: ErrorOf,
    timeout: float = 300.0,
    on_status: Callable[[int], None] = lambda status: None,
    block: int = BLOCK,
    depth: int = DEPTH,
) -> Received:
    """GET ``url`` and hand its body to ``consume`` in order, buffer by buffer, on a second thread.

    ``on_status(status)`` runs before the first byte is consumed (a 200 to a ranged request
    means the whole file comes). A status of 400 or more raises ``error_of(status, body, url)``;
    a body shorter than its Content-Length or a broken connection raises BackendUnavailableError
    (the caller keeps what it wrote and resumes with Range).
    """
    if _proxied(url):
        return _get_httpx(url, headers, consume, error_of, timeout, on_status)
    parts = urlsplit(url)
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        context = ssl.create_default_context(cafile=certifi.where())
        conn = http.client.HTTPSConnection(parts.netloc, timeout=timeout, context=context)
    else:
        conn = http.client.HTTPConnection(parts.netloc, timeout=timeout)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    try:
        conn.request("GET", target, headers=headers)
        response = conn.getresponse()
        failure = response.read(1 << 20) if response.status >= 400 else None
    except (OSError, http.client.HTTPException) as exc:
        conn.close()
        raise BackendUnavailableError(f"{url}: transfer failed: {type(exc).__name__}: {exc}") from exc
    if failure is not None:
        conn.close()
        raise error_of(response.status, failure, url)
    try:
        on_status(response.status)
        expected = response.length  # None without a Content-Length
        consumer = _Consumer(consume, block, depth)
        total = 0
        try:
            while consumer.error is None:
                buf = consumer.free.get()
                n = response.readinto(buf)
                if not n:
                    consumer.free.put(buf)
                    break
                consumer.put(buf, n)
                total += n
        except BaseException as exc:
            with contextlib.suppress(BaseException):
                consumer.finish()  # what arrived is written: a later pull resumes after it
            if isinstance(exc, (OSError, http.client.HTTPException)):
                raise BackendUnavailableError(f"{url}: transfer failed: {type(exc).__name__}: {exc}") from exc
            raise
        consumer.finish()  # raises what the consumer raised (a full disk, say) as it is
        if expected is not None and total < expected:
            raise BackendUnavailableError(
                f"{url}: transfer failed: the connection closed after {total} of {expected} bytes"
            )
        return Received(response.status, total)
    finally:
        conn.close()


def _get_httpx(
    url: str,
    headers: dict[str, str],
    consume: Consume,
    error_of: ErrorOf,
    timeout: float,
    on_status: Callable[[int], None],
) -> Received:
    total = 0
    try:
        with httpx.stream("GET", url, headers=headers, timeout=timeout) as response:
            if response.status_code >= 400:
                raise error_of(response.status_code, response.read(), url)
            on_status(response.status_code)
            for piece in response.iter_bytes(BLOCK):
                consume(memoryview(piece))
                total += len(piece)
            return Received(response.status_code, total)
    except httpx.HTTPError as exc:
        raise BackendUnavailableError(f"{url}: transfer failed: {type(exc).__name__}: {exc}") from exc
