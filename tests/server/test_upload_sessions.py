"""Upload sessions on disk: resumed by another process, bounded by the announced size, expired."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from weightvault.core.errors import ConflictError, DigestMismatchError, NotFoundError, PayloadTooLargeError
from weightvault.server.upload_sessions import UploadSessions

DATA = bytes(range(256)) * 4096  # 1 MiB


def _open(sessions: UploadSessions, sha: str | None = None) -> str:
    sha = sha or hashlib.sha256(DATA).hexdigest()
    return sessions.create("m", "w.bin", len(DATA), sha, "alice").id


def test_another_process_resumes_a_session_and_its_digest_is_checked(tmp_path: Path) -> None:
    first = UploadSessions(tmp_path / "uploads")
    sid = _open(first)
    session = first.get(sid, "m", "alice")
    a = first.begin(session, 0)
    a.write(DATA[:300_000])
    assert not a.finish()
    first.end(a)
    assert (tmp_path / "uploads").stat().st_mode & 0o777 == 0o700
    assert first.spool(sid).stat().st_mode & 0o077 == 0  # plaintext: the server's user only

    second = UploadSessions(tmp_path / "uploads")  # a restarted server: no running SHA-256 in memory
    with pytest.raises(NotFoundError):
        second.get(sid, "m", "bob")  # another principal's session does not exist for bob
    session = second.get(sid, "m", "alice")
    with pytest.raises(ConflictError):
        second.begin(session, 0)  # the session is at 300000
    b = second.begin(session, 300_000)
    with pytest.raises(ConflictError):
        second.begin(session, 300_000)  # one request at a time
    with pytest.raises(PayloadTooLargeError):
        b.write(DATA[300_000:] + b"x")  # longer than announced: this request's bytes are dropped
    assert second.offset(sid) == 300_000
    b.write(DATA[300_000:])
    assert b.finish()
    second.end(b)
    assert second.spool(sid).read_bytes() == DATA


def test_a_wrong_digest_removes_the_session(tmp_path: Path) -> None:
    sessions = UploadSessions(tmp_path / "uploads")
    sid = _open(sessions, sha="0" * 64)
    session = sessions.get(sid, "m", "alice")
    a = sessions.begin(session, 0)
    a.write(DATA)
    with pytest.raises(DigestMismatchError):
        a.finish()
    sessions.end(a)
    with pytest.raises(NotFoundError):
        sessions.get(sid, "m", "alice")
    assert list((tmp_path / "uploads").iterdir()) == []


def test_idle_sessions_are_removed_when_a_new_one_opens(tmp_path: Path) -> None:
    UploadSessions(tmp_path / "uploads").create("m", "a", 10, "0" * 64, "alice")
    expiring = UploadSessions(tmp_path / "uploads", idle_seconds=-3600)  # everything older is idle
    kept = expiring.create("m", "b", 10, "0" * 64, "alice")
    assert sorted(p.name for p in (tmp_path / "uploads").iterdir()) == [f"{kept.id}.json", f"{kept.id}.part"]
