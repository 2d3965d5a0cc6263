"""The store's change journal: one small object per change of a ref or of the set of packs.

Entries are numbered ``1, 2, 3, …`` without gaps and each is created with *if-absent*
semantics, so two writers never take the same number and a reader that has applied entry
``n`` learns whether anything changed with one read of entry ``n + 1`` (docs/format.md,
"Refresh"). Entries only say *what* changed; a reader re-reads the ref itself, which stays the
truth. ``journal-head`` is a hint of the last number (it may lag, never lead).
"""

from __future__ import annotations

import contextlib
import json
import threading
from datetime import UTC, datetime
from typing import Any

from weightvault.core import layout
from weightvault.core.errors import FormatError, MissingObjectError, ObjectExistsError, StorageError
from weightvault.core.manifest import canonical_json
from weightvault.storage.backend import Backend

JOURNAL_FORMAT = 1
REF = "ref"
PACK = "pack"
GONE = "gone"


class Journal:
    """Thread-safe appends and reads on one backend (the primary: secondaries have no journal)."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self._lock = threading.Lock()
        self._last = -1  # the highest number this process knows to exist; -1: not read yet

    def read(self, seq: int) -> dict[str, Any] | None:
        """Entry ``seq``, or None when it does not exist (yet)."""
        try:
            body = self._backend.get(layout.journal_key(seq))
        except MissingObjectError:
            return None
        try:
            entry = json.loads(body)
            if not isinstance(entry, dict) or entry.get("seq") != seq:
                raise ValueError("not an entry of this number")
        except ValueError as exc:
            raise FormatError(f"malformed journal entry {layout.journal_key(seq)}: {exc}") from exc
        if entry.get("format") != JOURNAL_FORMAT:
            raise FormatError(f"journal entry {seq} has format {entry.get('format')!r}, not {JOURNAL_FORMAT}")
        return entry

    def hint(self) -> int:
        try:
            return int(self._backend.get(layout.JOURNAL_HEAD).decode())
        except MissingObjectError:
            return 0
        except ValueError:
            return 0  # a damaged hint only costs extra probes

    def head(self) -> int:
        """The number of the last entry (0 for none): the hint, then probes forward."""
        seq = max(self.hint(), self._last, 0)
        while self._backend.exists(layout.journal_key(seq + 1)):
            seq += 1
        with self._lock:
            self._last = max(self._last, seq)
        return seq

    def append(self, kind: str, after: int = 0, **fields: Any) -> int:
        """Write an entry under the next free number after ``after`` (and after any number this
        process has seen); returns the number taken."""
        with self._lock:
            known = self._last
        if known < 0:
            known = self.hint()
        seq = max(after, known) + 1
        now = datetime.now(UTC).isoformat()
        while True:
            body = canonical_json({**fields, "format": JOURNAL_FORMAT, "kind": kind, "seq": seq, "time": now})
            try:
                self._backend.put(layout.journal_key(seq), body, if_absent=True)
                break
            except ObjectExistsError:
                seq += 1
        with self._lock:
            self._last = max(self._last, seq)
        with contextlib.suppress(StorageError):  # only a hint: a failed write costs probes later
            self._backend.put(layout.JOURNAL_HEAD, str(seq).encode())
        return seq
