"""Resumable whole-file uploads: one spool file per session under the server's home.

A session is opened with the file's path, size and plain SHA-256. Bytes are appended at the
session's offset by one request or several: a request that breaks off keeps what arrived, so
the client asks the offset and sends the rest (resume). A request that would pass the announced
size is refused and its bytes dropped; when the spool is complete its SHA-256 is compared, and
only a matching file is handed to the vault. The spool is plaintext on the server's disk (it is
the file the client sent), so it lives in ``<home>/tmp/uploads`` (0700) and is deleted as soon
as the file is stored or refused. Memory stays bounded: bytes go to disk as they arrive, and the
SHA-256 advances with them.

Sessions are local to a home: behind a load balancer, a session continues on another process
only if that process shares the home (or the balancer routes a client back to the same one);
otherwise the client is told 404 and starts the file again. Sessions idle for a day are removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from weightvault.core.errors import ConflictError, DigestMismatchError, NotFoundError, PayloadTooLargeError
from weightvault.storage.oserror import os_error

IDLE_SECONDS = 24 * 3600
_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    model: str
    path: str
    size: int
    sha256: str
    principal: str


class UploadNotFoundError(NotFoundError):
    code = "upload_not_found"


class _Progress:
    """A session's running SHA-256, valid while it covers exactly the spool's bytes."""

    def __init__(self) -> None:
        self.offset = 0
        self.sha = hashlib.sha256()


class UploadSessions:
    def __init__(self, root: Path, idle_seconds: float = IDLE_SECONDS) -> None:
        self.root = root
        self.idle_seconds = idle_seconds
        self._lock = threading.Lock()
        self._busy: set[str] = set()
        self._progress: dict[str, _Progress] = {}

    # ---- files ---------------------------------------------------------------------------------

    def _meta(self, sid: str) -> Path:
        return self.root / f"{sid}.json"

    def spool(self, sid: str) -> Path:
        return self.root / f"{sid}.part"

    def _sweep(self) -> None:
        """Remove sessions nobody touched for ``idle_seconds`` (their clients went away)."""
        cutoff = time.time() - self.idle_seconds
        for meta in self.root.glob("*.json"):
            sid = meta.stem
            with contextlib.suppress(OSError):
                part = self.spool(sid)
                last = max(meta.stat().st_mtime, part.stat().st_mtime if part.exists() else 0)
                if last < cutoff and sid not in self._busy:
                    self.remove(sid)

    # ---- sessions ------------------------------------------------------------------------------

    def create(self, model: str, path: str, size: int, sha256: str, principal: str) -> Session:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.root, 0o700)
        self._sweep()
        session = Session(secrets.token_hex(16), model, path, size, sha256, principal)
        fd = os.open(self.spool(session.id), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        tmp = self.root / f"{session.id}.json.tmp"
        tmp.write_text(json.dumps(asdict(session)))
        os.replace(tmp, self._meta(session.id))
        return session

    def get(self, sid: str, model: str, principal: str) -> Session:
        """The session ``sid`` of ``model`` opened by ``principal``; 404 for anything else."""
        if not _ID.match(sid):
            raise UploadNotFoundError("no such upload")
        try:
            d: dict[str, Any] = json.loads(self._meta(sid).read_text())
            session = Session(**d)
        except (OSError, ValueError, TypeError):
            raise UploadNotFoundError(
                f"upload {sid} does not exist (finished, expired or never opened)"
            ) from None
        if session.model != model or session.principal != principal:
            raise UploadNotFoundError(f"upload {sid} does not exist (finished, expired or never opened)")
        return session

    def offset(self, sid: str) -> int:
        try:
            return os.stat(self.spool(sid)).st_size
        except FileNotFoundError:
            raise UploadNotFoundError(f"upload {sid} does not exist") from None

    def remove(self, sid: str) -> None:
        for p in (self._meta(sid), self.spool(sid)):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        with self._lock:
            self._progress.pop(sid, None)

    def begin(self, session: Session, offset: int) -> Appender:
        """Exclusive right to append to ``session`` from ``offset`` (its current size), until
        ``end``. A second request to the same session meanwhile is a conflict."""
        with self._lock:
            if session.id in self._busy:
                raise ConflictError(f"upload {session.id} is receiving another request")
            self._busy.add(session.id)
        try:
            current = self.offset(session.id)
            if offset != current:
                raise ConflictError(f"upload {session.id} is at offset {current}, not {offset}")
            with self._lock:
                progress = self._progress.get(session.id)
            if progress is None or progress.offset != current:
                progress = self._rehash(session.id, current)
            return Appender(self, session, progress)
        except BaseException:
            with self._lock:
                self._busy.discard(session.id)
            raise

    def end(self, appender: Appender) -> None:
        sid = appender.session.id
        appender.close()
        with self._lock:
            if self._meta(sid).exists():  # not removed (stored, or refused by its digest)
                self._progress[sid] = appender.progress
            self._busy.discard(sid)

    def _rehash(self, sid: str, upto: int) -> _Progress:
        """The SHA-256 of a spool's bytes when this process did not see them arrive."""
        progress = _Progress()
        with open(self.spool(sid), "rb") as f:
            while progress.offset < upto:
                piece = f.read(min(8 << 20, upto - progress.offset))
                if not piece:
                    break
                progress.sha.update(piece)
                progress.offset += len(piece)
        return progress


class Appender:
    """Writes one request's bytes to a spool; undoes them if they pass the announced size."""

    def __init__(self, sessions: UploadSessions, session: Session, progress: _Progress) -> None:
        self.session = session
        self._sessions = sessions
        self.progress = progress
        self._start = progress.offset
        self._start_sha = progress.sha.copy()
        self._fd = os.open(sessions.spool(session.id), os.O_WRONLY)
        #: the spool's stat once ``finish`` matched its SHA-256 (over exactly these bytes)
        self.verified: os.stat_result | None = None

    @property
    def offset(self) -> int:
        return self.progress.offset

    def write(self, data: bytes) -> None:
        if self.progress.offset + len(data) > self.session.size:
            self.undo()
            raise PayloadTooLargeError(
                f"the upload is longer than the {self.session.size} bytes announced for {self.session.path}"
            )
        view = memoryview(data)
        at = self.progress.offset
        try:
            while view:
                n = os.pwrite(self._fd, view, at)
                view, at = view[n:], at + n
        except OSError as exc:  # a full disk: keep what was whole before this piece
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self.progress.offset)
            raise os_error(exc, f"spooling the upload of {self.session.path}") from None
        self.progress.sha.update(data)
        self.progress.offset += len(data)

    def undo(self) -> None:
        """Drop what this request wrote."""
        os.ftruncate(self._fd, self._start)
        self.progress.offset = self._start
        self.progress.sha = self._start_sha.copy()

    def finish(self) -> bool:
        """True when the spool holds the whole file and it matches its SHA-256; a complete file
        that does not match is deleted with its session (the client starts again)."""
        if self.progress.offset < self.session.size:
            return False
        os.fsync(self._fd)
        if self.progress.sha.hexdigest() != self.session.sha256:
            self._sessions.remove(self.session.id)
            raise DigestMismatchError(
                f"{self.session.path}: the upload does not hash to the SHA-256 announced "
                f"({self.session.sha256})"
            )
        self.verified = os.fstat(self._fd)
        return True

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
