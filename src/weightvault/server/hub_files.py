"""Hub uploads of models the server must ingest itself (encrypted models, ``compression: float``).

For these models the Hub client's chunks cannot be stored as they come (``vault.file_ingest``):
the server runs the embedded push pipeline on each whole file. An LFS object arrives by SHA-256
only, without the path it will have, and float-aware compression needs that path (a
``.safetensors`` file is encoded knowing its tensor layout). So an LFS PUT is spooled to disk
(bounded memory, through an upload session), its size and SHA-256 checked, and only a matching
file is kept as a *pending* object of the model; nothing reaches the store. The commit that
names it gives its path: the pending object is then ingested exactly as an embedded push of the
file under that path would store it, and removed. Pending objects are plaintext on the server's
disk, kept in the sessions' private folder and removed after a day without a commit.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from weightvault.core.errors import DigestMismatchError, InvalidInputError
from weightvault.server.upload_sessions import IDLE_SECONDS, UploadSessions
from weightvault.vault import file_ingest
from weightvault.vault.file_ingest import AnnouncedFile
from weightvault.vault.vault import Vault

#: bytes gathered from the request before each write to the spool
WRITE_BATCH = 4 << 20


def _folder(sessions: UploadSessions) -> Path:
    return sessions.root / "hub"


def pending_path(sessions: UploadSessions, model: str, sha256: str) -> Path:
    """Where a verified LFS object of ``model`` waits for its commit (named by model and oid)."""
    key = hashlib.sha256(model.encode()).hexdigest()[:32]
    return _folder(sessions) / f"{key}-{file_ingest.check_sha256(sha256)}.lfs"


def pending(sessions: UploadSessions, model: str, sha256: str) -> Path | None:
    p = pending_path(sessions, model, sha256)
    return p if p.exists() else None


def _sweep(sessions: UploadSessions) -> None:
    """Remove pending objects no commit named for ``IDLE_SECONDS`` (their clients went away)."""
    cutoff = time.time() - IDLE_SECONDS
    for p in _folder(sessions).glob("*.lfs"):
        with contextlib.suppress(OSError):
            if p.stat().st_mtime < cutoff:
                p.unlink()


def _keep(sessions: UploadSessions, spool: Path, model: str, sha256: str) -> None:
    target = pending_path(sessions, model, sha256)
    target.parent.mkdir(mode=0o700, exist_ok=True)
    _sweep(sessions)
    os.replace(spool, target)


async def receive(
    sessions: UploadSessions, pieces: AsyncIterator[bytes], model: str, sha256: str, size: int, principal: str
) -> None:
    """Spool one LFS object and keep it as pending once its size and SHA-256 match; anything else
    (too long, too short, another digest, a broken request) leaves nothing behind."""
    session = await run_in_threadpool(
        sessions.create, model, f"lfs/{file_ingest.check_sha256(sha256)}", size, sha256, principal
    )
    try:
        appender = await run_in_threadpool(sessions.begin, session, 0)
        try:
            batch: list[bytes] = []
            held = 0
            try:
                async for piece in pieces:
                    batch.append(piece)
                    held += len(piece)
                    if held >= WRITE_BATCH:
                        data = b"".join(batch)
                        batch.clear()
                        held = 0
                        await run_in_threadpool(appender.write, data)
            except ClientDisconnect:  # an LFS PUT does not resume: the client sends it again
                raise InvalidInputError(f"the upload of {sha256} ended early; send it again") from None
            await run_in_threadpool(appender.write, b"".join(batch))
            if not await run_in_threadpool(appender.finish):
                raise InvalidInputError(
                    f"the upload has {appender.offset} bytes, not the {size} announced; send it again"
                )
            await run_in_threadpool(_keep, sessions, sessions.spool(session.id), model, sha256)
        finally:
            await run_in_threadpool(sessions.end, appender)
    finally:
        await run_in_threadpool(sessions.remove, session.id)


def spool_inline(sessions: UploadSessions, model: str, data: bytes) -> str:
    """A small file sent inside a commit, kept as a pending object like an LFS upload."""
    sha = hashlib.sha256(data).hexdigest()
    target = pending_path(sessions, model, sha)
    target.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
    tmp = target.with_suffix(f".{os.getpid()}.tmp")
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, target)
    return sha


def held(vault: Vault, model: str, files: dict[str, int]) -> set[str]:
    """Which of ``files`` (SHA-256 -> size) the vault can rebuild for ``model`` already."""
    if not files:
        return set()
    missing = file_ingest.missing_files(vault, model, [AnnouncedFile("f", n, s) for s, n in files.items()])
    return set(files) - set(missing)


def ingest_pending(vault: Vault, sessions: UploadSessions, model: str, path: str, sha256: str) -> int | None:
    """Store the pending object ``sha256`` of ``model`` as the file ``path`` (as an embedded push
    of it would), then drop it; its size, or None when there is none. It is hashed again while it
    is read, so a pending object changed on disk is dropped and refused, never stored."""
    spool = pending(sessions, model, sha256)
    if spool is None:
        return None
    try:
        size = spool.stat().st_size
        file_ingest.ingest_file(vault, model, path, spool, sha256, size)
    except FileNotFoundError:  # a concurrent commit ingested it first
        return None
    except DigestMismatchError:
        spool.unlink(missing_ok=True)
        raise
    spool.unlink(missing_ok=True)
    return size
