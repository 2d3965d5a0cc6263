"""A push through the server that sends whole files: for models the server encrypts (the client
holds no keys, so it cannot chunk or name their data) and for float-aware compression (which
needs each file's tensor layout on the side that encodes).

The client hashes each file (SHA-256), asks which files the server lacks for the model, and
sends only those, several at a time: one upload session per file, its bytes streamed from disk
(never whole in memory). A request that breaks off is resumed from the offset the server
reports. The version is then committed by path and SHA-256, as the chunk protocol's commit is.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from weightvault.client.http import Http
from weightvault.core.errors import BackendUnavailableError, ConflictError, DigestMismatchError
from weightvault.vault import filescan
from weightvault.vault.source import SourceFile

#: bytes read from the file per piece of a request body
PIECE = 4 << 20
#: requests per file before an upload that keeps breaking off is given up
RESUME_ATTEMPTS = 5


def hash_files(files: list[SourceFile], workers: int, progress: Callable[[int], None]) -> list[str]:
    """The SHA-256 of each file, in order (hashlib releases the GIL: files in parallel)."""

    def one(sf: SourceFile) -> str:
        sha = filescan.sha256_file(sf.abspath, sf.size) if sf.size else _EMPTY
        progress(sf.size)
        return sha

    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="wv-hash") as pool:
        return list(pool.map(one, files))


_EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def announced(files: list[SourceFile], shas: list[str]) -> list[dict[str, Any]]:
    return [{"path": f.path, "size": f.size, "sha256": s} for f, s in zip(files, shas, strict=True)]


def missing_files(http: Http, model: str, files: list[dict[str, Any]]) -> list[str]:
    answer = http.json("POST", f"/models/{model}/-/files/missing", json={"files": files})
    return [str(s) for s in answer["missing"]]


def _body(sf: SourceFile, offset: int, sent: list[int]) -> Iterator[bytes]:
    fd = os.open(sf.abspath, os.O_RDONLY)
    try:
        if os.fstat(fd).st_size != sf.size:
            raise DigestMismatchError(f"{sf.path} changed while being pushed; push again")
        at = offset
        while at < sf.size:
            piece = os.pread(fd, min(PIECE, sf.size - at), at)
            if not piece:
                raise DigestMismatchError(f"{sf.path} changed while being pushed; push again")
            at += len(piece)
            sent[0] += len(piece)
            yield piece
    finally:
        os.close(fd)


def send_file(http: Http, model: str, sf: SourceFile, sha256: str) -> int:
    """Upload one file through a session; returns the bytes sent (more than its size if a
    request broke off and part of it was sent again)."""
    session = http.json(
        "POST", f"/models/{model}/-/uploads", json={"path": sf.path, "size": sf.size, "sha256": sha256}
    )
    url = f"/models/{model}/-/uploads/{session['id']}"
    offset = 0
    sent = [0]
    for attempt in range(RESUME_ATTEMPTS):
        try:
            d = http.json(
                "PUT",
                url,
                params={"offset": offset},
                content=_body(sf, offset, sent),
                headers={"Content-Type": "application/octet-stream", "Content-Length": str(sf.size - offset)},
            )
        except (BackendUnavailableError, ConflictError):
            # the request broke off (or the server still finishes the broken one): what arrived
            # stays in the session, so ask its offset and send the rest
            if attempt == RESUME_ATTEMPTS - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
            offset = int(http.json("GET", url)["offset"])
            continue
        if d["complete"]:
            return sent[0]
        offset = int(d["offset"])
    raise BackendUnavailableError(f"{sf.path}: the upload kept breaking off; push again (it resumes)")


def send_missing_files(
    http: Http, model: str, files: list[SourceFile], shas: list[str], workers: int
) -> tuple[int, int]:
    """Upload the files the server lacks, ``workers`` at a time; (files sent, bytes sent)."""
    missing = set(missing_files(http, model, announced(files, shas)))
    todo: dict[str, SourceFile] = {}
    for sf, sha in zip(files, shas, strict=True):
        if sha in missing:
            todo.setdefault(sha, sf)
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="wv-upload") as pool:
        sent = sum(pool.map(lambda item: send_file(http, model, item[1], item[0]), todo.items()))
    return len(todo), sent
