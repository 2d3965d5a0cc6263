"""The writes of a push on a SQLite index through the standard library alone.

``vault.lightpush`` runs the push pipeline without SQLAlchemy, whose import costs a CLI push
about a third of its start-up. This class has the few methods of ``RegistryIndex`` a plain push
calls (the dedup probes, a pack and its chunks, the recipe batch, the version and its manifest,
the journal cursor), each running the statements ``RegistryIndex`` runs in the same order, in
transactions begun the same way (``BEGIN IMMEDIATE``, one writer of this process at a time), on
a connection set up with the same pragmas, and storing values as SQLAlchemy stores them on
SQLite (a timestamp as ``YYYY-MM-DD HH:MM:SS.ffffff`` text, JSON with sorted keys). A new index
is created from ``sqlite_schema`` and stamped at head, as ``bootstrap`` creates it.

A database of another schema revision raises ``SnapshotUnavailable`` (the full path migrates it).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from weightvault.core.errors import (
    ConflictError,
    DiskFullError,
    VersionExistsError,
)
from weightvault.registry.locations import BATCH, best_locations
from weightvault.registry.lostdata import packs_collected, recipes_collected
from weightvault.registry.migrations import HEAD
from weightvault.registry.snapshot import SnapshotUnavailable
from weightvault.registry.sqlite_schema import DDL, STAMP

if TYPE_CHECKING:
    from weightvault.cas.pack import PackEntry

#: ``RegistryIndex``'s batch of recipe names per ``IN`` query in ``put_recipes``
_RECIPE_BATCH = 500


def stored_time(dt: datetime) -> str:
    """A timestamp as SQLAlchemy's ``DateTime`` stores it on SQLite (the offset is not kept)."""
    return (
        f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d} "
        f"{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}.{dt.microsecond:06d}"
    )


def _connect(path: Path) -> sqlite3.Connection:
    """A connection set up as ``registry.index._sqlite_pragmas`` sets up SQLAlchemy's."""
    db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA busy_timeout=30000")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("PRAGMA foreign_keys=ON")
    return db


class LightIndex:
    """A push's reads and writes on the SQLite index at ``path``."""

    def __init__(self, path: Path, *, create: bool = False) -> None:
        """``create``: the file must not hold an index yet; it is created at head, as
        ``RegistryIndex.sqlite`` creates a new one."""
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
        elif not path.is_file():
            raise SnapshotUnavailable(f"no index at {path}")
        self._path = path
        self._db = _connect(path)
        self._lock = threading.Lock()
        self._local = threading.local()
        self._probes: list[sqlite3.Connection] = []
        self._probes_lock = threading.Lock()
        try:
            if create:
                self._create()
            revision = self._db.execute("SELECT version_num FROM alembic_version").fetchall()
        except sqlite3.Error as exc:
            self._db.close()
            raise SnapshotUnavailable(f"cannot read {path}: {exc}") from None
        if revision != [(HEAD,)]:
            self._db.close()
            raise SnapshotUnavailable(f"index schema {revision!r} is not {HEAD!r}")

    def _create(self) -> None:
        with self._write() as db:
            if db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                raise SnapshotUnavailable(f"{self._path} is not empty")
            for statement in DDL:
                db.execute(statement)
            db.execute(*STAMP)

    def close(self) -> None:
        self.release_probes()
        self._db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, begun immediately (``RegistryIndex._write``)."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                _raise_disk_full(exc)
                raise
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException as exc:
                self._db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.OperationalError):
                    _raise_disk_full(exc)
                raise

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN")
            try:
                yield self._db
            finally:
                self._db.execute("COMMIT")

    # ---- the dedup probes (per thread, as ``RegistryIndex._probe_conn``) --------------------

    def _probe(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = _connect(self._path)
            self._local.conn = conn
            with self._probes_lock:
                self._probes.append(conn)
        return conn

    def has_chunk(self, chunk_id: bytes) -> bool:
        return self._probe().execute("SELECT 1 FROM chunks WHERE id = ?", (chunk_id,)).fetchone() is not None

    def has_chunks(self, chunk_ids: Sequence[bytes]) -> set[bytes]:
        """``RegistryIndex.has_chunks``: the indexed ids among ``chunk_ids``, a few queries for all."""
        found: set[bytes] = set()
        db = self._probe()
        for i in range(0, len(chunk_ids), BATCH):
            part = tuple(chunk_ids[i : i + BATCH])
            marks = ", ".join("?" * len(part))
            rows = db.execute(f"SELECT id FROM chunks WHERE id IN ({marks})", part)
            found.update(bytes(r[0]) for r in rows)
        return found

    def chunk_slot(self, chunk_id: bytes) -> int | None:
        row = self._probe().execute("SELECT max(key_slot) FROM chunks WHERE id = ?", (chunk_id,)).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def release_probes(self) -> None:
        with self._probes_lock:
            for conn in self._probes:
                conn.close()
            self._probes.clear()
        self._local = threading.local()

    # ---- state ----------------------------------------------------------------------------------

    def get_state(self, name: str) -> str | None:
        with self._read() as db:
            row = db.execute("SELECT value FROM store_state WHERE name = ?", (name,)).fetchone()
        return None if row is None else str(row[0])

    def set_state(self, name: str, value: str) -> None:
        with self._write() as db:
            if db.execute("SELECT 1 FROM store_state WHERE name = ?", (name,)).fetchone() is None:
                db.execute("INSERT INTO store_state (name, value) VALUES (?, ?)", (name, value))
            else:
                db.execute("UPDATE store_state SET value = ? WHERE name = ?", (value, name))

    # ---- packs, chunks and recipes -----------------------------------------------------------

    def has_pack(self, pack_id: str) -> bool:
        with self._read() as db:
            return db.execute("SELECT 1 FROM packs WHERE id = ?", (pack_id,)).fetchone() is not None

    def add_pack(
        self, pack_id: str, size: int, entries: Sequence[PackEntry], created: datetime | None = None
    ) -> bool:
        with self._write() as db:
            if db.execute("SELECT 1 FROM packs WHERE id = ?", (pack_id,)).fetchone() is not None:
                return False
            db.execute(
                "INSERT INTO packs (id, size, created_at, condemned_at) VALUES (?, ?, ?, NULL)",
                (pack_id, size, stored_time(created or datetime.now(UTC))),
            )
            rows = {
                e.chunk_id: (e.chunk_id, pack_id, e.offset, e.stored_len, e.raw_len, e.codec, e.key_slot)
                for e in entries
            }
            db.executemany(
                'INSERT INTO chunks (id, pack_id, "offset", stored_len, raw_len, codec, key_slot) '
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                list(rows.values()),
            )
            return True

    def drop_packs(self, pack_ids: Iterable[str]) -> None:
        plist = list(pack_ids)
        with self._write() as db:
            for i in range(0, len(plist), BATCH):
                part = plist[i : i + BATCH]
                marks = ", ".join("?" * len(part))
                db.execute(f"DELETE FROM chunks WHERE pack_id IN ({marks})", part)
                db.execute(f"DELETE FROM packs WHERE id IN ({marks})", part)

    def put_recipes(self, recipes: Sequence[tuple[str, int, bytes]], created: datetime | None = None) -> None:
        when = stored_time(created or datetime.now(UTC))
        todo = {r[0]: r for r in recipes}
        names = list(todo)
        with self._write() as db:
            for i in range(0, len(names), _RECIPE_BATCH):
                batch = names[i : i + _RECIPE_BATCH]
                marks = ", ".join("?" * len(batch))
                again = [n for (n,) in db.execute(f"SELECT name FROM recipes WHERE name IN ({marks})", batch)]
                if again:  # in use again: restart their grace period (one statement for the batch)
                    marks = ", ".join("?" * len(again))
                    db.execute(f"UPDATE recipes SET created_at = ? WHERE name IN ({marks})", (when, *again))
                for name in again:
                    del todo[name]
            db.executemany(
                "INSERT INTO recipes (name, size, body, created_at) VALUES (?, ?, ?, ?)",
                [(n, size, body, when) for n, size, body in todo.values()],
            )

    def pack_ids_for_chunks(self, ids: Iterable[bytes]) -> set[str]:
        """``RegistryIndex.pack_ids_for_chunks``: the pack of each chunk's best location."""
        unique = list(dict.fromkeys(ids))
        rows: list[Any] = []
        with self._read() as db:
            for i in range(0, len(unique), BATCH):
                part = unique[i : i + BATCH]
                marks = ", ".join("?" * len(part))
                rows.extend(
                    db.execute(
                        'SELECT chunks.id, chunks.pack_id, chunks."offset", chunks.stored_len, '
                        "chunks.raw_len, chunks.codec, chunks.key_slot, packs.condemned_at "
                        f"FROM chunks JOIN packs ON packs.id = chunks.pack_id WHERE chunks.id IN ({marks})",
                        part,
                    )
                )
        return {loc.pack_id for loc in best_locations(rows).values()}

    # ---- versions -------------------------------------------------------------------------------

    def _model_id(self, db: sqlite3.Connection, model: str) -> int | None:
        row = db.execute("SELECT id FROM models WHERE name = ?", (model,)).fetchone()
        return None if row is None else int(row[0])

    def label_exists(self, model: str, label: str) -> bool:
        with self._read() as db:
            mid = self._model_id(db, model)
            if mid is None:
                return False
            return (
                db.execute(
                    "SELECT id FROM versions WHERE model_id = ? AND label = ?", (mid, label)
                ).fetchone()
                is not None
            )

    def latest_commit(self, model: str) -> str | None:
        """The commit of ``model``'s newest version (``resolve(model, None)``'s order), if any."""
        return self._newest(model, "commit_id")

    def latest_label(self, model: str) -> str | None:
        """The label of ``model``'s newest version (``latest_commit``'s order), if any."""
        return self._newest(model, "label")

    def _newest(self, model: str, column: Literal["commit_id", "label"]) -> str | None:
        with self._read() as db:
            row = db.execute(
                f"SELECT versions.{column} FROM versions JOIN models ON models.id = versions.model_id "
                "WHERE models.name = ? ORDER BY versions.created_at DESC, versions.id DESC LIMIT 1",
                (model,),
            ).fetchone()
        return None if row is None else str(row[0])

    def version_commit(self, model: str, label: str) -> str | None:
        with self._read() as db:
            row = db.execute(
                "SELECT versions.commit_id FROM versions JOIN models ON models.id = versions.model_id "
                "WHERE models.name = ? AND versions.label = ?",
                (model, label),
            ).fetchone()
        return None if row is None else str(row[0])

    def add_version(
        self,
        *,
        model: str,
        label: str,
        commit: str,
        parent: str | None,
        created: datetime,
        message: str,
        metadata: dict[str, str],
        total_size: int,
        file_count: int,
        manifest: bytes,
        required_packs: Iterable[str] = (),
        required_recipes: Iterable[str] = (),
    ) -> tuple[str, ...]:
        """``RegistryIndex.add_version``, its checks in the same order; returns the new version's
        aliases (none: a label that is an alias is refused)."""
        packs = set(required_packs)
        when = stored_time(created)
        with self._write() as db:
            if packs:
                found: set[str] = set()
                plist = list(packs)
                for i in range(0, len(plist), BATCH):
                    part = plist[i : i + BATCH]
                    marks = ", ".join("?" * len(part))
                    found.update(
                        r[0] for r in db.execute(f"SELECT id FROM packs WHERE id IN ({marks})", part)
                    )
                if found != packs:
                    raise packs_collected(len(packs - found))
            mid = self._model_id(db, model)
            if mid is None:
                mid = db.execute(
                    "INSERT INTO models (name, created_at) VALUES (?, ?)", (model, when)
                ).lastrowid
            existing = db.execute(
                "SELECT commit_id FROM versions WHERE model_id = ? AND label = ?", (mid, label)
            ).fetchone()
            if existing is not None:
                raise VersionExistsError(f"version {model}@{label} already exists")
            if db.execute("SELECT id FROM aliases WHERE model_id = ? AND name = ?", (mid, label)).fetchone():
                raise ConflictError(f"{label!r} is an alias of {model}; choose another version label")
            rlist = list(set(required_recipes))
            if rlist:
                have: set[str] = set()
                for i in range(0, len(rlist), BATCH):
                    part = rlist[i : i + BATCH]
                    marks = ", ".join("?" * len(part))
                    have.update(
                        r[0] for r in db.execute(f"SELECT name FROM recipes WHERE name IN ({marks})", part)
                    )
                if len(have) != len(rlist):
                    raise recipes_collected()
            if db.execute("SELECT 1 FROM manifests WHERE commit_id = ?", (commit,)).fetchone() is None:
                db.execute(
                    "INSERT INTO manifests (commit_id, body, created_at) VALUES (?, ?, ?)",
                    (commit, manifest, when),
                )
            try:
                db.execute(
                    "INSERT INTO versions (model_id, label, commit_id, parent, created_at, message, "
                    "metadata_json, total_size, file_count) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        mid,
                        label,
                        commit,
                        parent,
                        when,
                        message,
                        json.dumps(metadata, sort_keys=True),
                        total_size,
                        file_count,
                    ),
                )
            except sqlite3.IntegrityError:
                raise VersionExistsError(f"version {model}@{label} already exists") from None
            if packs:  # a pack this version uses is live again
                plist = list(packs)
                for i in range(0, len(plist), BATCH):
                    part = plist[i : i + BATCH]
                    marks = ", ".join("?" * len(part))
                    db.execute(f"UPDATE packs SET condemned_at = NULL WHERE id IN ({marks})", part)
            return ()


def _raise_disk_full(exc: sqlite3.OperationalError) -> None:
    if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
        raise DiskFullError("disk full while writing the index") from exc
