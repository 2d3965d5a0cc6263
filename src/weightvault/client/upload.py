"""A push through the server: chunk and hash locally, ask what the server lacks, send only
that (several requests at a time), then commit the version by its files' recipes.

Chunking uses the server store's own parameters, so a remote push deduplicates against
everything pushed before, embedded or remote. Memory stays bounded: chunk ids and offsets are
kept, chunk bytes are read again from the source file when they are sent.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from weightvault.cas.chunker import Chunker, ChunkingParams
from weightvault.cas.frames import FRAME_HEADER, frame_header
from weightvault.cas.hashing import chunk_id
from weightvault.client.http import Http
from weightvault.core.errors import DigestMismatchError
from weightvault.vault import filescan
from weightvault.vault.source import SourceFile

#: ids per "which chunks are missing" request, and bytes per upload request
ASK_BATCH = 10_000
SEND_BYTES = 32 << 20


@dataclass(slots=True)
class ScannedFile:
    source: SourceFile
    sha256: str = ""
    #: (chunk id, offset in file, length)
    chunks: list[tuple[bytes, int, int]] = field(default_factory=list)


def chunker_of(http: Http) -> tuple[Chunker, int]:
    store = http.json("GET", "/store")
    params = ChunkingParams(store["chunk_min_size"], store["chunk_avg_size"], store["chunk_max_size"])
    return Chunker(params), int(store["max_upload_bytes"])


def scan(sf: SourceFile, chunker: Chunker, progress: Callable[[int], None]) -> ScannedFile:
    """One pass over the file: SHA-256 of the whole, content-defined chunks and their ids."""
    out = ScannedFile(sf)
    h = hashlib.sha256()
    offset = 0
    if sf.size:
        for view in filescan.chunk_file(sf.abspath, sf.size, chunker):
            h.update(view)
            out.chunks.append((chunk_id(view), offset, len(view)))
            offset += len(view)
            progress(len(view))
    out.sha256 = h.hexdigest()
    if offset != sf.size:
        raise DigestMismatchError(f"{sf.path} changed size while being read")
    return out


def _batches(
    todo: list[tuple[SourceFile, int, int, bytes]], limit: int
) -> Iterator[list[tuple[SourceFile, int, int, bytes]]]:
    batch: list[tuple[SourceFile, int, int, bytes]] = []
    size = 0
    for item in todo:
        if batch and size + item[2] + FRAME_HEADER > limit:
            yield batch
            batch, size = [], 0
        batch.append(item)
        size += item[2] + FRAME_HEADER
    if batch:
        yield batch


def send_missing(
    http: Http,
    model: str,
    files: list[ScannedFile],
    workers: int,
    max_request: int,
    progress: Callable[[int], None],
) -> tuple[int, int]:
    """Upload the chunks the server lacks; returns (chunks sent, bytes sent)."""
    first: dict[bytes, tuple[SourceFile, int, int]] = {}
    for f in files:
        for cid, off, n in f.chunks:
            first.setdefault(cid, (f.source, off, n))
    ids = list(first)
    missing: list[bytes] = []
    for i in range(0, len(ids), ASK_BATCH):
        answer = http.json(
            "POST",
            f"/models/{model}/-/chunks/missing",
            json={"ids": [c.hex() for c in ids[i : i + ASK_BATCH]]},
        )
        missing += [bytes.fromhex(c) for c in answer["missing"]]
    todo = [(*first[cid], cid) for cid in missing]
    todo.sort(key=lambda t: (str(t[0].abspath), t[1]))  # read each file front to back

    def send(batch: list[tuple[SourceFile, int, int, bytes]]) -> int:
        def body() -> Iterator[bytes]:
            fds: dict[str, int] = {}
            try:
                for sf, off, n, cid in batch:
                    fd = fds.get(str(sf.abspath))
                    if fd is None:
                        fd = fds[str(sf.abspath)] = os.open(sf.abspath, os.O_RDONLY)
                    data = os.pread(fd, n, off)
                    if len(data) != n or chunk_id(data) != cid:
                        raise DigestMismatchError(f"{sf.path} changed while being pushed; push again")
                    yield frame_header(cid, n)
                    yield data
            finally:
                for fd in fds.values():
                    os.close(fd)

        length = sum(n + FRAME_HEADER for _, _, n, _ in batch)
        http.json(
            "POST",
            f"/models/{model}/-/chunks",
            content=body(),
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(length)},
        )
        sent = sum(n for _, _, n, _ in batch)
        progress(sent)
        return sent

    limit = min(SEND_BYTES, max_request)
    with ThreadPoolExecutor(workers, thread_name_prefix="wv-upload") as pool:
        sent = sum(pool.map(send, _batches(todo, limit)))
    return len(todo), sent
