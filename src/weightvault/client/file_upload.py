"""A push through the server that sends whole files: for models the server encrypts (the client
holds no keys, so it cannot chunk or name their data) and for float-aware compression (which
needs each file's tensor layout on the side that encodes).

The client hashes each file (SHA-256), asks which files the server lacks for the model, and
sends only those, several at a time: one upload session per file, its bytes streamed from disk
(never whole in memory). A request that breaks off is resumed from the offset the server
reports. The version is then committed by path and SHA-256, as the chunk protocol's commit is.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from weightvault.client.http import Http
from weightvault.core.errors import (
    BackendUnavailableError,
    ConflictError,
    DigestMismatchError,
    UploadIncompleteError,
    UploadNotFoundError,
    UploadOffsetError,
    WeightvaultError,
)
from weightvault.vault import filescan
from weightvault.vault.source import SourceFile

#: bytes read from the file per piece of a request body
PIECE = 4 << 20
#: requests per file before an upload that keeps breaking off (or being refused) is given up
RESUME_ATTEMPTS = 8


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


def _open(http: Http, model: str, sf: SourceFile, sha256: str) -> str:
    session = http.json(
        "POST", f"/models/{model}/-/uploads", json={"path": sf.path, "size": sf.size, "sha256": sha256}
    )
    return f"/models/{model}/-/uploads/{session['id']}"


def send_file(http: Http, model: str, sf: SourceFile, sha256: str) -> int:
    """Upload one file through a session; returns the bytes sent (more than its size if a
    request broke off and part of it was sent again).

    Behind a load balancer each request may reach another server process. Each holds only the
    bytes it received itself, so after a break the offset asked for is the one the answering
    process can continue from (0 when another one got the earlier bytes), and a request sent
    from an offset the receiving process cannot take is refused (409 ``upload_offset``); every
    process accepts offset 0. So a second refusal in a row starts the file again from 0, which
    always makes progress. A session that is gone (expired, or finished by a request whose answer
    was lost) is opened again unless the server holds the file by now. At most
    ``RESUME_ATTEMPTS`` requests per file, then the session is abandoned and
    ``UploadIncompleteError`` raised."""
    url = _open(http, model, sf, sha256)
    offset = 0
    sent = [0]
    refused = False  # the previous request was refused for its offset
    last: Exception | None = None
    for attempt in range(RESUME_ATTEMPTS):
        if attempt:
            time.sleep(0.2 * attempt)
        try:
            d = http.json(
                "PUT",
                url,
                params={"offset": offset},
                content=_body(sf, offset, sent),
                headers={"Content-Type": "application/octet-stream", "Content-Length": str(sf.size - offset)},
            )
        except UploadOffsetError as exc:
            last = exc
            at = 0 if refused else _offset(http, url, offset)
            refused = True
            if at is not None:
                offset = at
                continue
        except UploadNotFoundError as exc:
            last = exc
        except (BackendUnavailableError, ConflictError) as exc:
            # the request broke off (or the server still finishes the broken one): what arrived
            # stays in the session on the process that got it; ask where to continue
            last, refused = exc, False
            at = _offset(http, url, offset)
            if at is not None:
                offset = at
                continue
        else:
            if d["complete"]:
                return sent[0]
            last, offset, refused = None, int(d["offset"]), False
            continue
        # the session is gone: the file was stored by a request whose answer did not arrive, or
        # the session expired or was dropped (a digest mismatch is raised, not retried)
        if sha256 not in missing_files(http, model, announced([sf], [sha256])):
            return sent[0]
        url, offset, refused = _open(http, model, sf, sha256), 0, False
    with contextlib.suppress(WeightvaultError):  # give the session up (its spools go with it)
        http.request("DELETE", url)
    raise UploadIncompleteError(
        f"{sf.path}: the upload did not complete in {RESUME_ATTEMPTS} requests"
        + (f" (last: {last})" if last else "")
        + "; push again (files the server already holds are not sent again)"
    )


def _offset(http: Http, url: str, offset: int) -> int | None:
    """Where the answering process continues the session (None: the session is gone); while the
    server cannot be reached, ``offset`` again (the next request tells)."""
    try:
        return int(http.json("GET", url)["offset"])
    except UploadNotFoundError:
        return None
    except BackendUnavailableError:
        return offset


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
