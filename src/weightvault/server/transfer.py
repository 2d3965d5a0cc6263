"""Moving bytes: ranged downloads and framed chunk uploads, with bounded memory.

The vault's chunk reader keeps per-thread buffers and its streams must stay on one thread, so a
download runs whole on one thread of a bounded pool and hands its pieces to the event loop
through a small queue (at most ``QUEUE_DEPTH`` blocks of a few chunks each in flight). An
upload is parsed frame by frame as it arrives and handed to the vault in the other direction:
the server holds one chunk of a request at a time, never a whole file.

Upload body: a sequence of frames ``chunk id (32 bytes) | length (4 bytes, big-endian) | data``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import re
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from weightvault.cas.frames import FRAME_HEADER
from weightvault.cas.hashing import CHUNK_ID_SIZE
from weightvault.core.errors import InvalidInputError, PayloadTooLargeError, RangeNotSatisfiableError

if TYPE_CHECKING:
    from weightvault.server.metrics import Metrics
    from weightvault.vault.stream import FileStream

QUEUE_DEPTH = 4
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
T = TypeVar("T")
_DONE = object()


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(start, end exclusive) of a single ``Range: bytes=…`` header; None for the whole file.

    Several ranges in one header are answered with the whole file, as RFC 9110 allows.
    """
    if header is None:
        return None
    header = header.strip()
    if "," in header:
        return None
    m = _RANGE.match(header)
    if not m or (not m.group(1) and not m.group(2)):
        raise RangeNotSatisfiableError(f"unsupported Range header {header[:100]!r}")
    first, last = m.group(1), m.group(2)
    if not first:  # suffix: the last N bytes
        n = int(last)
        if n == 0:
            raise RangeNotSatisfiableError("empty suffix range")
        return max(size - n, 0), size
    start = int(first)
    end = size if not last else min(int(last) + 1, size)
    if start >= size or end <= start:
        raise RangeNotSatisfiableError(f"range {header} is outside the file ({size} bytes)")
    return start, end


class Bridge:
    """Runs blocking producers/consumers on a bounded pool and connects them to async code."""

    def __init__(self, threads: int) -> None:
        self.pool = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="wv-transfer")

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

    async def stream(self, produce: Callable[[], Iterator[T]]) -> AsyncGenerator[T, None]:
        """Iterate ``produce()`` on one pool thread; its pieces arrive here in order."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue(QUEUE_DEPTH)
        stop = threading.Event()

        def put(item: Any) -> bool:
            fut = asyncio.run_coroutine_threadsafe(queue.put(item), loop)
            while True:
                try:
                    fut.result(timeout=1.0)
                    return True
                except concurrent.futures.TimeoutError:
                    if stop.is_set():
                        fut.cancel()
                        return False

        def run() -> None:
            try:
                for piece in produce():
                    if stop.is_set() or not put(piece):
                        return
                put(_DONE)
            except BaseException as exc:  # handed to the consumer, which raises it
                put(exc)

        task = loop.run_in_executor(self.pool, run)
        try:
            while True:
                item = await queue.get()
                if item is _DONE:
                    break
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()  # the producer sees it within a second and ends; its thread returns to the pool
            while not queue.empty():
                queue.get_nowait()
            task.add_done_callback(lambda f: f.exception())  # retrieved: no "never retrieved" noise

    async def consume(self, items: AsyncIterator[T], work: Callable[[Iterator[T]], Any]) -> Any:
        """Run ``work(iterator)`` on a pool thread while ``items`` are read here, one at a time.

        If reading ``items`` fails (a broken or oversized body), ``work`` sees the error raised by
        its iterator, so it can undo what it did; the error is then raised here.
        """
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue(2)

        def iterate() -> Iterator[T]:
            while True:
                item = asyncio.run_coroutine_threadsafe(queue.get(), loop).result()
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item

        task = loop.run_in_executor(self.pool, lambda: work(iterate()))

        async def feed(item: Any) -> bool:
            put = asyncio.ensure_future(queue.put(item))
            await asyncio.wait({put, task}, return_when=asyncio.FIRST_COMPLETED)
            if not put.done():
                put.cancel()
                return False
            return True

        try:
            async for item in items:
                if not await feed(item):
                    break  # the worker stopped early: its error is raised below
            else:
                await feed(_DONE)
        except BaseException as exc:
            if not task.done():
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait(
                    exc
                    if isinstance(exc, InvalidInputError)
                    else InvalidInputError(f"upload interrupted: {type(exc).__name__}")
                )
                with contextlib.suppress(BaseException):
                    await asyncio.shield(task)
            raise
        return await task


async def file_body(
    bridge: Bridge, metrics: Metrics, fs: FileStream, start: int, stop: int, *, check_chunks: bool = True
) -> AsyncIterator[memoryview]:
    """Bytes ``start:stop`` of a version's file for a response body, read on the download pool and
    counted in the metrics (bytes sent, and the whole download's time from this call).

    The first block is read before this returns, so a file whose first bytes cannot be read (a
    corrupt chunk and no good copy, a missing pack) is answered with its JSON error rather than
    a status 200 and a cut body; a later failure can only cut the body, and a client that resumes
    with Range from where it stopped then gets that error. ``check_chunks=False`` (the client
    checks the SHA-256 itself) skips the server's per-chunk BLAKE3."""
    started = time.perf_counter()

    def produce() -> Iterator[memoryview]:
        # blocks of several chunks, each checked against its id (unless the client checks the
        # file) before it is handed over, in memory of their own (no copy)
        return fs.iter_blocks(start, stop, check_chunks=check_chunks)

    pieces = bridge.stream(produce)
    try:
        first = await anext(pieces)
    except BaseException:
        await pieces.aclose()
        raise

    async def body(head: list[memoryview]) -> AsyncIterator[memoryview]:
        try:
            piece = head.pop()  # held by nobody once sent: its buffer is read into again
            metrics.bytes_out.inc(len(piece))
            yield piece
            del piece
            async for piece in pieces:
                metrics.bytes_out.inc(len(piece))
                yield piece
        finally:
            await pieces.aclose()
        metrics.pull_seconds.observe(time.perf_counter() - started)

    return body([first])


async def frames(
    body: AsyncIterator[bytes], max_chunk: int, max_total: int
) -> AsyncIterator[tuple[bytes, bytes]]:
    """(chunk id, data) frames from an upload body, each complete before it is yielded."""
    buf = bytearray()
    total = 0
    async for piece in body:
        total += len(piece)
        if total > max_total:
            raise PayloadTooLargeError(f"an upload request is at most {max_total} bytes")
        buf += piece
        while len(buf) >= FRAME_HEADER:
            n = int.from_bytes(buf[CHUNK_ID_SIZE:FRAME_HEADER], "big")
            if n > max_chunk:
                raise PayloadTooLargeError(f"a chunk is at most {max_chunk} bytes")
            if len(buf) < FRAME_HEADER + n:
                break
            cid = bytes(buf[:CHUNK_ID_SIZE])
            data = bytes(buf[FRAME_HEADER : FRAME_HEADER + n])
            del buf[: FRAME_HEADER + n]
            yield cid, data
    if buf:
        raise InvalidInputError("the upload body ends inside a frame (shorter than its frames announce)")
