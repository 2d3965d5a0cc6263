"""This machine's memory of files it already hashed, so a re-push does not read them again.

An entry maps a file's real path and stat (device, inode, size, mtime and ctime in ns) under
one chunking scheme to the recipe the push computed for it. It is a hint, never the truth:
a push uses it only when every chunk of the recipe is still in the index, and the entry is
trusted only when the file's mtime and ctime fall in an earlier whole second than the moment
the file was stat'ed for hashing. A file rewritten within that same second (which a clock of
one-second granularity cannot tell apart) is read and hashed again ("racily clean" in git's
terms). It lives in its own SQLite file beside the home's index: stat values mean nothing on
another machine, so it is never shared through the store or a server database.

An entry also keeps what the push's format check found in the file (``safety``: a pickle
finding, or ``null`` when it passed with nothing to report, and the weightvault version that
checked it), so a re-push does not open an unchanged file to check it again either. Entries
written before that column existed, by a push that did not check, or by another version of the
checks have none that counts, and the file is checked again.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from weightvault.core.errors import FormatError
from weightvault.core.manifest import FileRecipe
from weightvault.core.version import VERSION
from weightvault.vault.source import SourceFile

NS = 1_000_000_000
#: paths looked up in one query (well under SQLite's limit of bound parameters)
_PATHS_PER_QUERY = 400
_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path TEXT NOT NULL, scheme TEXT NOT NULL,
    dev INTEGER NOT NULL, ino INTEGER NOT NULL, size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL, ctime_ns INTEGER NOT NULL,
    seen_ns INTEGER NOT NULL, recipe BLOB NOT NULL, safety TEXT,
    PRIMARY KEY (path, scheme)
)
"""


def trusted(src: SourceFile, seen_ns: int) -> bool:
    """Whether a stat match can stand for equal content: the file's last change (mtime or
    ctime) is in a whole second before the one in which it was stat'ed for hashing."""
    return max(src.mtime_ns, src.ctime_ns) // NS < seen_ns // NS


class StatCache:
    """Lookups for a whole push in one query pass; records in one transaction."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # a lost entry costs one re-hash, nothing else
            db.execute(_SCHEMA)
            _add_safety_column(db)
            self._db = db
        return self._db

    def checked(self, files: Sequence[SourceFile]) -> dict[Path, dict[str, Any] | None]:
        """What the format check found in each of ``files`` that is unchanged (a trusted stat
        match, under any scheme) since a push checked it, by abspath."""
        if not files or not self.path.exists():
            return {}
        found: dict[Path, dict[str, Any] | None] = {}
        with self._lock:
            rows = self._rows(
                files, "dev, ino, size, mtime_ns, ctime_ns, seen_ns, safety", "safety IS NOT NULL", ()
            )
        for src in files:
            for row in rows.get(str(src.abspath), ()):
                same = tuple(row[:5]) == (src.dev, src.inode, src.size, src.mtime_ns, src.ctime_ns)
                if same and trusted(src, row[5]):
                    with contextlib.suppress(ValueError, TypeError, KeyError):
                        kept = json.loads(row[6])
                        finding = kept["finding"]
                        if kept["by"] == VERSION and (finding is None or isinstance(finding, dict)):
                            found[src.abspath] = finding
                            break
        return found

    def _rows(
        self, files: Sequence[SourceFile], columns: str, where: str, args: tuple[str, ...]
    ) -> dict[str, list[tuple[Any, ...]]]:
        """The rows of ``files`` (stat'ed ones: a synthetic source has no hint) by path, a few
        hundred paths per query: a query per file of a 10,000-file re-push cost more than the
        rest of the lookup."""
        paths = list(dict.fromkeys(str(f.abspath) for f in files if f.ctime_ns and f.dev))
        db = self._conn()
        out: dict[str, list[tuple[Any, ...]]] = {}
        for i in range(0, len(paths), _PATHS_PER_QUERY):
            part = paths[i : i + _PATHS_PER_QUERY]
            marks = ",".join("?" * len(part))
            for row in db.execute(
                f"SELECT path, {columns} FROM files WHERE {where} AND path IN ({marks})", (*args, *part)
            ):
                out.setdefault(row[0], []).append(tuple(row[1:]))
        return out

    def known(self, files: Sequence[SourceFile]) -> set[Path] | None:
        """The abspaths of ``files`` with a trusted stat match under any scheme (a push may not
        need to read them), from a read-only connection of its own: it may run before the vault
        is open, and writes nothing. None when the cache exists but cannot be read."""
        if not files or not self.path.exists():
            return set()
        try:
            db = sqlite3.connect(f"{self.path.as_uri()}?mode=ro", uri=True, timeout=5)
        except sqlite3.Error:
            return None
        try:
            out: set[Path] = set()
            for src in files:
                key = (src.dev, src.inode, src.size, src.mtime_ns, src.ctime_ns)
                rows = db.execute(
                    "SELECT dev, ino, size, mtime_ns, ctime_ns, seen_ns FROM files WHERE path = ?",
                    (str(src.abspath),),
                )
                if any(tuple(row[:5]) == key and trusted(src, row[5]) for row in rows):
                    out.add(src.abspath)
            return out
        except sqlite3.Error:
            return None
        finally:
            db.close()

    def lookup(self, files: Sequence[SourceFile], scheme: str) -> dict[Path, FileRecipe]:
        """The cached recipes of ``files`` whose stat matches a trusted entry, by abspath."""
        if not files or not self.path.exists():
            return {}
        hits: dict[Path, FileRecipe] = {}
        with self._lock:
            rows = self._rows(
                files, "dev, ino, size, mtime_ns, ctime_ns, seen_ns, recipe", "scheme = ?", (scheme,)
            )
        for src in files:
            for row in rows.get(str(src.abspath), ())[:1]:  # (path, scheme) is the primary key
                if tuple(row[:5]) != (src.dev, src.inode, src.size, src.mtime_ns, src.ctime_ns):
                    continue
                if not trusted(src, row[5]):
                    continue
                with contextlib.suppress(FormatError):
                    recipe = FileRecipe.from_bytes(row[6])
                    if recipe.size == src.size:
                        hits[src.abspath] = recipe
        return hits

    def record(
        self,
        entries: Iterable[tuple[SourceFile, FileRecipe, int]],
        scheme: str,
        findings: Mapping[str, dict[str, Any]] | None = None,
    ) -> None:
        """Remember ``(file, recipe, seen_ns)`` triples (``seen_ns``: when the file was stat'ed).
        ``findings``: the push checked every file, and found these (by path in the source)."""
        rows = [
            (
                str(s.abspath), scheme, s.dev, s.inode, s.size, s.mtime_ns, s.ctime_ns, seen, r.to_bytes(),
                None if findings is None else _kept(findings.get(s.path)),
            )
            for s, r, seen in entries
            if s.ctime_ns and s.dev
        ]  # fmt: skip
        if not rows:
            return
        with self._lock:
            db = self._conn()
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


def _kept(finding: dict[str, Any] | None) -> str:
    if finding is None:
        return _PASSED
    return json.dumps({"by": VERSION, "finding": finding})


#: ``_kept`` of a file that passed with nothing to report (most files: encoded once)
_PASSED = json.dumps({"by": VERSION, "finding": None})


def _add_safety_column(db: sqlite3.Connection) -> None:
    """A table from before the ``safety`` column gets it (another process may add it first)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(files)")}
    if "safety" in columns:
        return
    try:
        db.execute("ALTER TABLE files ADD COLUMN safety TEXT")
    except sqlite3.OperationalError:
        if "safety" not in {row[1] for row in db.execute("PRAGMA table_info(files)")}:
            raise
