"""JSON of REST v1 back into the domain objects the embedded vault returns."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from weightvault.core.access import AuditEntry, GrantInfo, TokenInfo
from weightvault.core.manifest import FileEntry
from weightvault.core.types import PushResult, VersionInfo


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def version(d: dict[str, Any]) -> VersionInfo:
    return VersionInfo(
        model=d["model"],
        label=d["label"],
        commit=d["commit"],
        created=datetime.fromisoformat(d["created"]),
        message=d["message"],
        metadata=dict(d["metadata"]),
        total_size=d["total_size"],
        file_count=d["file_count"],
        parent=d.get("parent"),
        aliases=tuple(d.get("aliases") or ()),
        files=tuple(FileEntry(f["path"], f["size"], f["sha256"]) for f in d.get("files") or ()),
        lineage=tuple(d.get("lineage") or ()),
        safety=dict(d.get("safety") or {}),
    )


def push(
    d: dict[str, Any], *, bytes_read: int, bytes_written: int, chunks_new: int, seconds: float
) -> PushResult:
    """A push's answer (``PushOut``) with what only the client measured: what it read and sent."""
    return PushResult(
        version=version(d["version"]),
        bytes_read=bytes_read,
        bytes_written=bytes_written,
        chunks_total=d["chunks_total"],
        chunks_new=chunks_new,
        seconds=seconds,
        replication=d["replication"],
        unchanged=bool(d.get("unchanged")),
    )


def token(d: dict[str, Any]) -> TokenInfo:
    return TokenInfo(
        id=d["id"],
        principal=d["principal"],
        scope=d["scope"],
        kind=d["kind"],
        description=d["description"],
        last_chars=d["last_chars"],
        created=datetime.fromisoformat(d["created"]),
        expires=_time(d.get("expires")),
        revoked=_time(d.get("revoked")),
        last_used=_time(d.get("last_used")),
    )


def grant(d: dict[str, Any]) -> GrantInfo:
    return GrantInfo(d["principal"], d["pattern"], d["role"], datetime.fromisoformat(d["created"]))


def audit(d: dict[str, Any]) -> AuditEntry:
    return AuditEntry(
        d["id"],
        datetime.fromisoformat(d["at"]),
        d["principal"],
        d["action"],
        d["outcome"],
        d.get("model"),
        d.get("version"),
        d["source"],
        d["detail"],
    )
