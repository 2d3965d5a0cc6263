"""Open whole-file upload sessions, in the index every server process shares.

A session's metadata (model, path, size, SHA-256, who opened it, when it was last used) lives
here, so a session opened on one server process is known to all of them behind a load balancer.
Its bytes do not: they are plaintext, and each process spools what it received on its own disk
(``server.upload_sessions``). Rows are mapped to ``UploadRecord`` here, at the boundary.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select, update

from weightvault.registry.index import RegistryIndex, _aware, utcnow
from weightvault.registry.schema import UploadSessionRow
from weightvault.registry.sessions import DatabaseSessions


@dataclass(frozen=True, slots=True)
class UploadRecord:
    id: str
    model: str
    path: str
    size: int
    sha256: str
    principal: str
    created: datetime
    touched: datetime


def _record(row: UploadSessionRow) -> UploadRecord:
    return UploadRecord(
        id=row.id,
        model=row.model,
        path=row.path,
        size=row.size,
        sha256=row.sha256,
        principal=row.principal,
        created=_aware(row.created_at),
        touched=_aware(row.touched_at),
    )


class UploadSessionIndex:
    def __init__(self, index: RegistryIndex) -> None:
        self._db = DatabaseSessions(index.engine)

    def create(self, model: str, path: str, size: int, sha256: str, principal: str) -> UploadRecord:
        """A new session with a random id (128 bits: not guessable, so not enumerable)."""
        now = utcnow()
        row = UploadSessionRow(
            id=secrets.token_hex(16),
            model=model,
            path=path,
            size=size,
            sha256=sha256,
            principal=principal,
            created_at=now,
            touched_at=now,
        )
        with self._db.transaction() as s:
            s.add(row)
        return _record(row)

    def get(self, sid: str) -> UploadRecord | None:
        with self._db.session() as s:
            row = s.get(UploadSessionRow, sid)
            return _record(row) if row is not None else None

    def touch(self, sid: str) -> bool:
        """Mark the session used now; False when it no longer exists (finished, expired, refused)."""
        with self._db.transaction() as s:
            result = s.execute(
                update(UploadSessionRow).where(UploadSessionRow.id == sid).values(touched_at=utcnow())
            )
            return bool(getattr(result, "rowcount", 0))

    def remove(self, sid: str) -> None:
        with self._db.transaction() as s:
            s.execute(delete(UploadSessionRow).where(UploadSessionRow.id == sid))

    def existing(self, ids: Iterable[str]) -> set[str]:
        """Which of ``ids`` are open sessions."""
        wanted = list(ids)
        found: set[str] = set()
        with self._db.session() as s:
            for at in range(0, len(wanted), 500):
                part = wanted[at : at + 500]
                found.update(s.scalars(select(UploadSessionRow.id).where(UploadSessionRow.id.in_(part))))
        return found

    def sweep(self, idle_since: datetime) -> int:
        """Remove sessions nobody used since ``idle_since`` (their clients went away); how many."""
        with self._db.transaction() as s:
            result = s.execute(delete(UploadSessionRow).where(UploadSessionRow.touched_at < idle_since))
            return int(getattr(result, "rowcount", 0) or 0)
