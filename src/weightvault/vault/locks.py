"""Locks kept in the store, so that every machine sharing it sees them.

Three kinds (docs/format.md, "Locks and online gc"):

* ``shared``: held by every writer that may reference existing data (push, re-encryption)
  from before its first deduplication probe until its version is committed;
* ``gc``: at most one gc at a time, held for a whole gc run;
* ``exclusive``: held by gc only while it takes its final decision and deletes. It waits for the
  shared locks to go; a shared lock taker that sees an exclusive lock withdraws and waits.

A lock is an object ``locks/<random id>`` written *before* the taker lists the others (so of
two takers at least the later one sees the other). A holder rewrites it every
``stale_seconds / 6``; a lock not rewritten for ``stale_seconds``, or held by a process of this
host that no longer exists, is stale: others ignore and remove it.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from weightvault.core import layout
from weightvault.core.errors import ConcurrentModificationError, MissingObjectError, StorageError
from weightvault.core.manifest import canonical_json
from weightvault.storage.backend import Backend

SHARED = "shared"
GC = "gc"
EXCLUSIVE = "exclusive"
#: which kinds a taker of a kind must not coexist with
_CONFLICTS = {SHARED: {EXCLUSIVE}, GC: {GC}, EXCLUSIVE: {SHARED, EXCLUSIVE}}
POLL_SECONDS = 0.2


@dataclass(frozen=True, slots=True)
class LockInfo:
    key: str
    kind: str
    host: str
    pid: int
    refreshed: datetime

    def stale(self, stale_seconds: float) -> bool:
        if (datetime.now(UTC) - self.refreshed).total_seconds() > stale_seconds:
            return True
        if self.host == socket.gethostname():
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return True
            except PermissionError:
                return False
        return False

    def describe(self) -> str:
        when = f"{self.refreshed:%Y-%m-%d %H:%M:%S}"
        return f"{self.kind} lock of pid {self.pid} on {self.host} (refreshed {when} UTC)"


def read_locks(backend: Backend) -> list[LockInfo]:
    out = []
    for info in backend.list(layout.LOCKS):
        try:
            raw = json.loads(backend.get(info.key))
            out.append(
                LockInfo(
                    info.key,
                    str(raw["kind"]),
                    str(raw["host"]),
                    int(raw["pid"]),
                    datetime.fromisoformat(raw["refreshed"]),
                )
            )
        except MissingObjectError:
            continue
        except (ValueError, KeyError, TypeError):  # unreadable: treat as a lock of every kind
            out.append(LockInfo(info.key, "unreadable", "?", 0, datetime.fromtimestamp(info.mtime, UTC)))
    return out


class StoreLock:
    """One lock object; ``acquire`` waits (up to ``wait_seconds``) for conflicting holders."""

    def __init__(self, backend: Backend, kind: str, *, stale_seconds: float, wait_seconds: float) -> None:
        self.backend = backend
        self.kind = kind
        self.key = layout.lock_key(uuid.uuid4().hex)
        self.stale_seconds = stale_seconds
        self.wait_seconds = wait_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.held = False

    def _body(self) -> bytes:
        body: dict[str, Any] = {
            "kind": self.kind,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "refreshed": datetime.now(UTC).isoformat(),
        }
        return canonical_json(body)

    def _conflicts(self) -> list[LockInfo]:
        bad = []
        for lock in read_locks(self.backend):
            if lock.key == self.key:
                continue
            if lock.stale(self.stale_seconds):
                with contextlib.suppress(StorageError):
                    self.backend.delete(lock.key)
                continue
            if lock.kind in _CONFLICTS[self.kind] or lock.kind == "unreadable":
                bad.append(lock)
        return bad

    def acquire(self) -> None:
        deadline = time.monotonic() + self.wait_seconds
        while True:
            self.backend.put(self.key, self._body())
            conflicts = self._conflicts()
            if not conflicts:
                break
            if self.kind == EXCLUSIVE and all(c.kind == SHARED for c in conflicts):
                # keep our lock (new shared takers withdraw when they see it) and let writers finish
                while conflicts and time.monotonic() < deadline:
                    time.sleep(POLL_SECONDS)
                    conflicts = self._conflicts()
                if not conflicts:
                    break
            self.backend.delete(self.key)
            if self.kind == GC or time.monotonic() >= deadline:
                raise ConcurrentModificationError(
                    f"the store is locked: {conflicts[0].describe()}; try again later"
                )
            time.sleep(POLL_SECONDS)
        self.held = True
        self._stop.clear()
        self._thread = threading.Thread(target=self._keep_fresh, name="wv-lock", daemon=True)
        self._thread.start()

    def _keep_fresh(self) -> None:
        while not self._stop.wait(self.stale_seconds / 6):
            with contextlib.suppress(StorageError):
                self.backend.put(self.key, self._body())

    def still_held(self) -> bool:
        """Whether our lock object is still there (a holder stalled past staleness may have lost it)."""
        return self.backend.exists(self.key)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self.held:
            with contextlib.suppress(StorageError):
                self.backend.delete(self.key)
        self.held = False


@contextlib.contextmanager
def holding(backend: Backend, kind: str, *, stale_seconds: float, wait_seconds: float) -> Iterator[StoreLock]:
    lock = StoreLock(backend, kind, stale_seconds=stale_seconds, wait_seconds=wait_seconds)
    lock.acquire()
    try:
        yield lock
    finally:
        lock.release()
