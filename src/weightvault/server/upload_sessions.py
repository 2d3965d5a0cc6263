"""Resumable whole-file uploads: sessions shared by every server process, spools local to each.

A session is opened with the file's path, size and plain SHA-256; it is a row of the shared
index (``registry.upload_sessions``), so every server process behind a load balancer knows it,
checks who opened it, and may take its bytes. The bytes go to a spool file on the disk of the
process that receives them: they are plaintext (the file the client sent), so they never go to
the bucket; they live in ``<home>/tmp/uploads`` (0700, files 0600) and are deleted as soon as
the file is stored or refused. A request that breaks off keeps what arrived, so the client asks
the offset and sends the rest. A process answers the offset it can continue from: its own
spool's length, or 0 when another process received the earlier bytes; every process accepts a
request from offset 0 (it starts, or restarts, its own spool), so a client whose requests land
on another process starts the file again there instead of failing. A request that would pass
the announced size is refused and its bytes dropped; when a spool is complete its SHA-256 is
compared, and only a matching file is handed to the vault. Memory stays bounded: bytes go to
disk as they arrive, and the SHA-256 advances with them.

Sessions nobody used for a day are removed from the index; a spool is removed when its session
is gone (finished or expired, on whichever process) or when it was idle for a day itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import threading
import time
from datetime import timedelta
from pathlib import Path

from weightvault.core.errors import (
    DigestMismatchError,
    PayloadTooLargeError,
    UploadBusyError,
    UploadNotFoundError,
    UploadOffsetError,
)
from weightvault.registry.index import utcnow
from weightvault.registry.upload_sessions import UploadRecord as Session
from weightvault.registry.upload_sessions import UploadSessionIndex
from weightvault.storage.oserror import os_error

__all__ = ["IDLE_SECONDS", "Appender", "Session", "UploadNotFoundError", "UploadSessions"]

IDLE_SECONDS = 24 * 3600
SETTLE_SECONDS = 10.0  # how long an offset query waits for a request still receiving to end
_ID = re.compile(r"^[0-9a-f]{32}$")


class _Progress:
    """A session's running SHA-256, valid while it covers exactly the spool's bytes."""

    def __init__(self) -> None:
        self.offset = 0
        self.sha = hashlib.sha256()


def _gone(sid: str) -> UploadNotFoundError:
    return UploadNotFoundError(f"upload {sid} does not exist (finished, expired or never opened)")


class UploadSessions:
    def __init__(self, root: Path, index: UploadSessionIndex, idle_seconds: float = IDLE_SECONDS) -> None:
        self.root = root
        self.index = index
        self.idle_seconds = idle_seconds
        self._lock = threading.Lock()
        self._settled = threading.Condition(self._lock)  # notified when a session stops receiving
        self._busy: set[str] = set()
        self._progress: dict[str, _Progress] = {}

    # ---- files ---------------------------------------------------------------------------------

    def spool(self, sid: str) -> Path:
        return self.root / f"{sid}.part"

    def _sweep(self) -> None:
        """Remove sessions nobody touched for ``idle_seconds`` (their clients went away) from the
        index, and this process's spools whose session is gone or which were idle as long."""
        self.index.sweep(utcnow() - timedelta(seconds=self.idle_seconds))
        cutoff = time.time() - self.idle_seconds
        spools = {p.name.removesuffix(".part"): p for p in self.root.glob("*.part")}
        alive = self.index.existing(spools)
        for sid, part in spools.items():
            with contextlib.suppress(OSError):
                if sid in self._busy:
                    continue
                if sid not in alive or part.stat().st_mtime < cutoff:
                    part.unlink()
                    with self._lock:
                        self._progress.pop(sid, None)
        for legacy in self.root.glob("*.json"):  # per-home session files of earlier versions
            with contextlib.suppress(OSError):
                legacy.unlink()

    # ---- sessions ------------------------------------------------------------------------------

    def _root(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.root, 0o700)

    def create(self, model: str, path: str, size: int, sha256: str, principal: str) -> Session:
        self._root()
        self._sweep()
        return self.index.create(model, path, size, sha256, principal)

    def get(self, sid: str, model: str, principal: str) -> Session:
        """The session ``sid`` of ``model`` opened by ``principal``; 404 for anything else
        (another principal's session does not exist for this one)."""
        if not _ID.match(sid):
            raise UploadNotFoundError("no such upload")
        session = self.index.get(sid)
        if session is None or session.model != model or session.principal != principal:
            raise _gone(sid)
        return session

    def offset(self, sid: str) -> int:
        """Where this process can continue the session: its spool's length (0 without one)."""
        try:
            return os.stat(self.spool(sid)).st_size
        except FileNotFoundError:
            return 0

    def settled_offset(self, sid: str, wait: float = SETTLE_SECONDS) -> int:
        """``offset`` once no request of this process still appends to the session (at most
        ``wait`` seconds): a client asks after its request broke off, often before the server
        has noticed, and an offset that is about to move would send it to a refused retry."""
        with self._settled:
            self._settled.wait_for(lambda: sid not in self._busy, timeout=wait)
        return self.offset(sid)

    def remove(self, sid: str) -> None:
        """End the session everywhere (the index row) and drop this process's spool; other
        processes' spools of it go at their next sweep."""
        self.index.remove(sid)
        with contextlib.suppress(FileNotFoundError):
            self.spool(sid).unlink()
        with self._lock:
            self._progress.pop(sid, None)

    def abandon(self, sid: str) -> None:
        """End the session at a client's request, even while a request still writes to it here
        (a broken one the server has not noticed yet): that request drops its spool as it ends."""
        self.index.remove(sid)
        with self._lock:
            if sid in self._busy:
                return
        self.remove(sid)

    def begin(self, session: Session, offset: int) -> Appender:
        """Exclusive right (in this process) to append to ``session`` from ``offset``: this
        process's spool length, or 0 (a fresh start here, dropping what this spool held),
        until ``end``. A second request to the same session meanwhile is a conflict."""
        with self._lock:
            if session.id in self._busy:
                raise UploadBusyError(f"upload {session.id} is receiving another request")
            self._busy.add(session.id)
        try:
            current = self.offset(session.id)
            if offset != current and offset != 0:
                raise UploadOffsetError(
                    f"upload {session.id} continues from offset {current} on this server, not {offset} "
                    "(or from 0)"
                )
            if not self.index.touch(session.id):  # finished or expired meanwhile
                raise _gone(session.id)
            self._root()
            fd = os.open(self.spool(session.id), os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                if offset == 0 and current:
                    os.ftruncate(fd, 0)
            finally:
                os.close(fd)
            with self._lock:
                progress = self._progress.get(session.id)
            if progress is None or progress.offset != offset:
                progress = self._rehash(session.id, offset)
            return Appender(self, session, progress)
        except BaseException:
            with self._lock:
                self._busy.discard(session.id)
                self._settled.notify_all()
            raise

    def end(self, appender: Appender) -> None:
        sid = appender.session.id
        appender.close()
        kept = self.spool(sid).exists()  # not removed (stored, or refused by its digest)
        if kept and not self.index.touch(sid):  # the session ended elsewhere meanwhile
            with contextlib.suppress(FileNotFoundError):
                self.spool(sid).unlink()
            kept = False
        with self._lock:
            if kept:
                self._progress[sid] = appender.progress
            self._busy.discard(sid)
            self._settled.notify_all()

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
