"""Upload sessions: kept in the shared index, spooled on the disk of the process that receives
the bytes; resumed by a restarted process, restarted from 0 by another one, bounded by the
announced size, checked by SHA-256, expired when idle (on SQLite and PostgreSQL)."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from weightvault.core.errors import (
    DigestMismatchError,
    NotFoundError,
    PayloadTooLargeError,
    UploadBusyError,
    UploadOffsetError,
)
from weightvault.registry.index import RegistryIndex
from weightvault.registry.upload_sessions import UploadSessionIndex
from weightvault.server.upload_sessions import UploadSessions

from ..conftest import new_postgres_database

DATA = bytes(range(256)) * 4096  # 1 MiB


@pytest.fixture(params=["sqlite", "postgresql"])
def table(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[UploadSessionIndex]:
    url = f"sqlite:///{tmp_path / 'i.db'}" if request.param == "sqlite" else new_postgres_database(request)
    index = RegistryIndex(url)
    yield UploadSessionIndex(index)
    index.close()


def _open(sessions: UploadSessions, sha: str | None = None) -> str:
    sha = sha or hashlib.sha256(DATA).hexdigest()
    return sessions.create("m", "w.bin", len(DATA), sha, "alice").id


def test_a_restarted_process_resumes_its_spool_and_the_digest_is_checked(
    tmp_path: Path, table: UploadSessionIndex
) -> None:
    first = UploadSessions(tmp_path / "uploads", table)
    sid = _open(first)
    session = first.get(sid, "m", "alice")
    a = first.begin(session, 0)
    a.write(DATA[:300_000])
    assert not a.finish()
    first.end(a)
    assert (tmp_path / "uploads").stat().st_mode & 0o777 == 0o700
    assert first.spool(sid).stat().st_mode & 0o077 == 0  # plaintext: the server's user only

    second = UploadSessions(tmp_path / "uploads", table)  # same home: no running SHA-256 in memory
    with pytest.raises(NotFoundError):
        second.get(sid, "m", "bob")  # another principal's session does not exist for bob
    with pytest.raises(NotFoundError):
        second.get(sid, "other", "alice")  # nor under another model
    session = second.get(sid, "m", "alice")
    assert second.offset(sid) == 300_000
    with pytest.raises(UploadOffsetError):
        second.begin(session, 5)
    b = second.begin(session, 300_000)
    with pytest.raises(UploadBusyError):
        second.begin(session, 300_000)  # one request at a time
    with pytest.raises(PayloadTooLargeError):
        b.write(DATA[300_000:] + b"x")  # longer than announced: this request's bytes are dropped
    assert second.offset(sid) == 300_000
    b.write(DATA[300_000:])
    assert b.finish()
    second.end(b)
    assert second.spool(sid).read_bytes() == DATA


def test_another_process_knows_the_session_and_restarts_it_from_zero(
    tmp_path: Path, table: UploadSessionIndex
) -> None:
    a = UploadSessions(tmp_path / "a" / "uploads", table)
    b = UploadSessions(tmp_path / "b" / "uploads", table)  # another home, the same index
    sid = _open(a)
    part = a.begin(a.get(sid, "m", "alice"), 0)
    part.write(DATA[:300_000])
    a.end(part)

    session = b.get(sid, "m", "alice")  # opened on a, known on b
    assert b.offset(sid) == 0  # b holds none of the bytes: it continues from 0
    with pytest.raises(UploadOffsetError, match="offset 0"):
        b.begin(session, 300_000)
    whole = b.begin(session, 0)
    whole.write(DATA)
    assert whole.finish()
    b.end(whole)
    assert b.spool(sid).read_bytes() == DATA
    b.remove(sid)  # stored: the session ends everywhere
    with pytest.raises(NotFoundError):
        a.get(sid, "m", "alice")
    assert a.spool(sid).exists()  # a's spool goes at its next sweep
    a.create("m", "next", 1, "0" * 64, "alice")
    assert not a.spool(sid).exists()

    # a process holding part of a file also takes a fresh start from 0 (its spool is dropped)
    sid = _open(a)
    part = a.begin(a.get(sid, "m", "alice"), 0)
    part.write(DATA[:500_000])
    a.end(part)
    again = a.begin(a.get(sid, "m", "alice"), 0)
    assert a.offset(sid) == 0
    again.write(DATA)
    assert again.finish()
    a.end(again)


def test_a_wrong_digest_removes_the_session(tmp_path: Path, table: UploadSessionIndex) -> None:
    sessions = UploadSessions(tmp_path / "uploads", table)
    sid = _open(sessions, sha="0" * 64)
    session = sessions.get(sid, "m", "alice")
    a = sessions.begin(session, 0)
    a.write(DATA)
    with pytest.raises(DigestMismatchError):
        a.finish()
    sessions.end(a)
    with pytest.raises(NotFoundError):
        sessions.get(sid, "m", "alice")
    assert table.get(sid) is None
    assert list((tmp_path / "uploads").iterdir()) == []


def test_idle_sessions_are_removed_from_the_index_and_the_disk(
    tmp_path: Path, table: UploadSessionIndex
) -> None:
    other = UploadSessions(tmp_path / "other", table)
    idle = other.create("m", "a", 10, "0" * 64, "alice")
    spooled = other.begin(idle, 0)
    spooled.write(b"12345")
    other.end(spooled)
    expiring = UploadSessions(tmp_path / "uploads", table, idle_seconds=-3600)  # everything is idle
    kept = expiring.create("m", "b", 10, "0" * 64, "alice")
    assert table.get(idle.id) is None  # swept from the shared index by another process
    assert table.get(kept.id) is not None  # the sweep runs before the new session is made
    with pytest.raises(NotFoundError):
        other.get(idle.id, "m", "alice")
    other.create("m", "c", 10, "0" * 64, "alice")  # the spool of a swept session goes too
    assert not other.spool(idle.id).exists()


def test_an_offset_asked_while_a_request_still_receives_is_the_one_after_it_ends(
    tmp_path: Path, table: UploadSessionIndex
) -> None:
    sessions = UploadSessions(tmp_path / "uploads", table)
    sid = _open(sessions)
    appender = sessions.begin(sessions.get(sid, "m", "alice"), 0)
    appender.write(DATA[:100_000])
    answers: list[int] = []
    asker = threading.Thread(target=lambda: answers.append(sessions.settled_offset(sid)))
    asker.start()  # a client whose request broke off asks before the server has noticed
    asker.join(0.5)
    assert asker.is_alive() and not answers  # it waits: 100,000 is about to move
    appender.write(DATA[100_000:250_000])  # the rest of what arrived before the break
    sessions.end(appender)
    asker.join(10)
    assert answers == [250_000]
    assert sessions.settled_offset(sid, wait=0) == 250_000  # nothing receiving: answered at once


def test_an_offset_query_gives_up_waiting_on_a_request_that_does_not_end(
    tmp_path: Path, table: UploadSessionIndex
) -> None:
    sessions = UploadSessions(tmp_path / "uploads", table)
    sid = _open(sessions)
    appender = sessions.begin(sessions.get(sid, "m", "alice"), 0)
    appender.write(DATA[:4096])
    assert sessions.settled_offset(sid, wait=0.2) == 4096  # bounded: the current length
    sessions.end(appender)
