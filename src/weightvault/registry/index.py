"""The registry index: models, versions, aliases, and where every chunk lives.

Rows are mapped to domain objects here, at the boundary; nothing above this module sees an
ORM object. The index can always be rebuilt from the store (``Vault.recover``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, delete, event, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError as SAIntegrityError
from sqlalchemy.exc import OperationalError as SAOperationalError
from sqlalchemy.orm import Session, sessionmaker

from weightvault.cas.pack import PackEntry
from weightvault.core.errors import (
    AmbiguousRevisionError,
    ConflictError,
    DiskFullError,
    ModelNotFoundError,
    RevisionNotFoundError,
    VersionExistsError,
)
from weightvault.core.revision import LATEST, looks_like_commit
from weightvault.registry import bootstrap
from weightvault.registry.locations import BATCH, ChunkLocation, best_locations
from weightvault.registry.lostdata import packs_collected, recipes_collected
from weightvault.registry.migrations import HEAD
from weightvault.registry.schema import (
    AliasRow,
    Base,
    ChunkRow,
    ManifestRow,
    ModelRow,
    PackRow,
    RecipeRow,
    StateRow,
    VersionRow,
)

MIGRATIONS = Path(__file__).parent / "migrations"
#: The newest migration; checked against Alembic's own head by a test. Knowing it here lets an
#: up-to-date database open without importing Alembic (a third of the CLI's start-up time).
SCHEMA_HEAD = HEAD
_BATCH = BATCH
#: Alembic keeps its migration context in module globals: two indexes migrating at once in one
#: process (two vaults opened by two threads) would run each other's steps. One at a time.
_MIGRATE_LOCK = threading.Lock()


#: SQLite's result code for "database or disk is full"; PostgreSQL's SQLSTATE disk_full
_SQLITE_FULL = 13
_PG_DISK_FULL = "53100"


def _disk_full(orig: BaseException | None) -> bool:
    """Whether a driver error is the database's disk (or quota) running out."""
    return (
        getattr(orig, "sqlite_errorcode", None) == _SQLITE_FULL
        or getattr(orig, "sqlstate", None) == _PG_DISK_FULL
    )


def _revision(conn: Connection) -> str | None:
    if not conn.dialect.has_table(conn, "alembic_version"):
        return None
    rev = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    return None if rev is None else str(rev)


def upgrade_schema(conn: Connection, revision: str = "head") -> None:
    """Run the Alembic migrations up to ``revision`` on ``conn`` (in its transaction); the tests
    use an older ``revision`` to build the index an older release left behind."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, revision)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class VersionRecord:
    """A version as the index knows it (the manifest body is fetched separately)."""

    model: str
    label: str
    commit: str
    parent: str | None
    created: datetime
    message: str
    metadata: dict[str, str]
    total_size: int
    file_count: int
    aliases: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PackRecord:
    id: str
    size: int
    created: datetime
    condemned: datetime | None


def normalise_url(url: str) -> str:
    """``postgresql://`` and ``postgres://`` URLs use psycopg 3, the driver we ship."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


class RegistryIndex:
    """The index on SQLite (embedded default) or PostgreSQL (servers), chosen by SQLAlchemy URL."""

    def __init__(self, url: str) -> None:
        self.url = url = normalise_url(url)
        self.engine: Engine = create_engine(url, future=True, pool_pre_ping=not url.startswith("sqlite"))
        self._immediate = threading.local()
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
            event.listen(self.engine, "begin", self._sqlite_begin)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._write_lock = threading.Lock()  # SQLite allows one writer; queue ours instead of spinning
        self._local = threading.local()
        self._raw: list[Any] = []
        self._migrate()

    @classmethod
    def sqlite(cls, path: Path) -> RegistryIndex:
        path.parent.mkdir(parents=True, exist_ok=True)
        return cls(f"sqlite:///{path}")

    def schema_revision(self) -> str | None:
        with self.engine.connect() as conn:
            return _revision(conn)

    def _migrate(self) -> None:
        """Bring the database to the head schema: nothing to do when it is there; an empty one is
        created at head directly (``bootstrap``); an older one runs the Alembic migrations."""
        if self.schema_revision() == SCHEMA_HEAD:
            return
        # on SQLite the migration's transaction takes the write lock when it begins (a deferred one
        # that reads first cannot wait for the lock when it comes to write: "database is locked")
        with _MIGRATE_LOCK:
            self._immediate.on = True
            try:
                with self.engine.begin() as conn:
                    self._immediate.on = False
                    if self.engine.dialect.name == "postgresql":
                        # several server processes may start at once on one database: one migrates,
                        # the others wait here and then find nothing left to do
                        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7469646576)")
                    if _revision(conn) == SCHEMA_HEAD:
                        pass  # another process or thread got here first
                    elif bootstrap.is_empty(conn):
                        bootstrap.create_head(conn)
                    else:
                        upgrade_schema(conn)
            finally:
                self._immediate.on = False

    def close(self) -> None:
        self.release_probes()
        self.engine.dispose()

    def release_probes(self) -> None:
        """Return the per-thread probe connections to the pool (call when a push's threads are done)."""
        for conn in self._raw:
            conn.close()
        self._raw.clear()
        self._local = threading.local()

    def _probe_conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self.engine.raw_connection()
            self._local.conn = conn
            self._raw.append(conn)
        return conn

    def has_chunk(self, chunk_id: bytes) -> bool:
        """The per-chunk dedup probe of a push: one primary-key lookup on a per-thread connection."""
        cur = self._probe_conn().cursor()
        try:
            cur.execute(
                "SELECT 1 FROM chunks WHERE id = ?"
                if self.engine.dialect.paramstyle == "qmark"
                else "SELECT 1 FROM chunks WHERE id = %s",
                (chunk_id,),
            )
            return cur.fetchone() is not None
        finally:
            cur.close()

    def has_chunks(self, chunk_ids: Sequence[bytes]) -> set[bytes]:
        """The ids among ``chunk_ids`` that are indexed: a push's batch of small files probes its
        chunks in a few queries, not one each (``has_chunk``), on the same per-thread connection."""
        mark = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
        found: set[bytes] = set()
        cur = self._probe_conn().cursor()
        try:
            for i in range(0, len(chunk_ids), _BATCH):
                part = tuple(chunk_ids[i : i + _BATCH])
                cur.execute(f"SELECT id FROM chunks WHERE id IN ({','.join([mark] * len(part))})", part)
                found.update(bytes(row[0]) for row in cur.fetchall())
        finally:
            cur.close()
        return found

    @contextmanager
    def _read(self) -> Iterator[Session]:
        with self._sessions() as s:
            yield s

    def _sqlite_begin(self, conn: Any) -> None:
        """Write transactions take SQLite's write lock when they start (``BEGIN IMMEDIATE``), before
        their reads: a commit's checks, a sweep and a recover see what they then write over, even
        with other processes on the same file. Reads begin deferred and never block writers."""
        conn.exec_driver_sql("BEGIN IMMEDIATE" if getattr(self._immediate, "on", False) else "BEGIN")

    @contextmanager
    def _write(self) -> Iterator[Session]:
        """One write transaction; a full disk (or quota) is a ``DiskFullError``, as it is for the
        store's own writes, whichever of the two runs out first."""
        try:
            with self._write_lock, self._sessions() as s, s.begin():
                self._immediate.on = True
                try:
                    s.connection()  # begins now, immediately, before any read of the transaction
                finally:
                    self._immediate.on = False
                if self.engine.dialect.name == "postgresql":
                    # one index writer at a time across every process, as SQLite's database lock
                    # gives: the checks a push's commit and a gc sweep make stay true until they commit
                    s.execute(text("SELECT pg_advisory_xact_lock(7469646577)"))
                yield s
        except SAOperationalError as exc:
            if _disk_full(exc.orig):
                raise DiskFullError("disk full while writing the index") from exc
            raise

    # ---- models ---------------------------------------------------------------------------------

    def _model_id(self, s: Session, name: str) -> int:
        mid = s.scalar(select(ModelRow.id).where(ModelRow.name == name))
        if mid is None:
            raise ModelNotFoundError(f"model {name!r} not found")
        return mid

    def _ensure_model(self, s: Session, name: str, created: datetime | None = None) -> int:
        mid = s.scalar(select(ModelRow.id).where(ModelRow.name == name))
        if mid is None:
            row = ModelRow(name=name, created_at=created or utcnow())
            s.add(row)
            s.flush()
            mid = row.id
        return mid

    def list_model_names(self) -> list[str]:
        with self._read() as s:
            return list(s.scalars(select(ModelRow.name).order_by(ModelRow.name)))

    def model_created(self, name: str) -> datetime:
        with self._read() as s:
            created = s.scalar(select(ModelRow.created_at).where(ModelRow.name == name))
            if created is None:
                raise ModelNotFoundError(f"model {name!r} not found")
            return _aware(created)

    # ---- versions -------------------------------------------------------------------------------

    def _record(self, s: Session, model: str, row: VersionRow) -> VersionRecord:
        aliases = tuple(
            s.scalars(select(AliasRow.name).where(AliasRow.version_id == row.id).order_by(AliasRow.name))
        )
        return VersionRecord(
            model=model,
            label=row.label,
            commit=row.commit_id,
            parent=row.parent,
            created=_aware(row.created_at),
            message=row.message,
            metadata=json.loads(row.metadata_json),
            total_size=row.total_size,
            file_count=row.file_count,
            aliases=aliases,
        )

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
    ) -> VersionRecord:
        """Make a version visible, in one transaction that also checks its packs still exist."""
        packs = set(required_packs)
        with self._write() as s:
            if packs:
                found: set[str] = set()
                plist = list(packs)
                for i in range(0, len(plist), _BATCH):
                    found.update(s.scalars(select(PackRow.id).where(PackRow.id.in_(plist[i : i + _BATCH]))))
                if found != packs:
                    raise packs_collected(len(packs - found))
            mid = self._ensure_model(s, model, created)
            existing = s.scalar(
                select(VersionRow).where(VersionRow.model_id == mid, VersionRow.label == label)
            )
            if existing is not None:
                if existing.commit_id == commit:
                    # the ref this commit just created was already indexed by another process's
                    # refresh (several processes sharing one PostgreSQL index): the same version
                    return self._record(s, model, existing)
                raise VersionExistsError(f"version {model}@{label} already exists")
            if s.scalar(select(AliasRow.id).where(AliasRow.model_id == mid, AliasRow.name == label)):
                raise ConflictError(f"{label!r} is an alias of {model}; choose another version label")
            if required_recipes:
                rlist = list(set(required_recipes))
                have: set[str] = set()
                for i in range(0, len(rlist), _BATCH):
                    have.update(
                        s.scalars(select(RecipeRow.name).where(RecipeRow.name.in_(rlist[i : i + _BATCH])))
                    )
                if len(have) != len(rlist):
                    raise recipes_collected()
            if s.get(ManifestRow, commit) is None:
                s.add(ManifestRow(commit_id=commit, body=manifest, created_at=created))
            row = VersionRow(
                model_id=mid,
                label=label,
                commit_id=commit,
                parent=parent,
                created_at=created,
                message=message,
                metadata_json=json.dumps(metadata, sort_keys=True),
                total_size=total_size,
                file_count=file_count,
            )
            s.add(row)
            try:
                s.flush()
            except SAIntegrityError:
                raise VersionExistsError(f"version {model}@{label} already exists") from None
            if packs:  # a pack this version uses is live again
                plist = list(packs)
                for i in range(0, len(plist), _BATCH):
                    s.execute(
                        update(PackRow).where(PackRow.id.in_(plist[i : i + _BATCH])).values(condemned_at=None)
                    )
            return self._record(s, model, row)

    def add_versions(self, versions: Sequence[dict[str, Any]]) -> int:
        """Insert many versions read from the store's refs in one transaction (a full scan or a
        recover of thousands of refs must not pay one commit each); versions whose label is taken
        are skipped. Each dict has ``add_version``'s keyword arguments. Returns how many were added."""
        added = 0
        with self._write() as s:
            models: dict[str, int] = {}
            for v in versions:
                mid = models.get(v["model"])
                if mid is None:
                    mid = models[v["model"]] = self._ensure_model(s, v["model"], v["created"])
                if s.scalar(
                    select(VersionRow.id).where(VersionRow.model_id == mid, VersionRow.label == v["label"])
                ):
                    continue
                if s.get(ManifestRow, v["commit"]) is None:
                    s.add(ManifestRow(commit_id=v["commit"], body=v["manifest"], created_at=v["created"]))
                s.add(
                    VersionRow(
                        model_id=mid,
                        label=v["label"],
                        commit_id=v["commit"],
                        parent=v["parent"],
                        created_at=v["created"],
                        message=v["message"],
                        metadata_json=json.dumps(v["metadata"], sort_keys=True),
                        total_size=v["total_size"],
                        file_count=v["file_count"],
                    )
                )
                s.flush()
                added += 1
        return added

    def list_versions(self, model: str) -> list[VersionRecord]:
        """Newest first. Two queries whatever the count (plain rows, no ORM objects, aliases in
        one pass): ``ls MODEL`` stays flat from one version to ten thousand."""
        with self._read() as s:
            mid = self._model_id(s, model)
            aliases: dict[int, list[str]] = {}
            for vid, name in s.execute(
                select(AliasRow.version_id, AliasRow.name)
                .where(AliasRow.model_id == mid)
                .order_by(AliasRow.name)
            ):
                aliases.setdefault(vid, []).append(name)
            v = VersionRow
            rows = s.execute(
                select(
                    v.id, v.label, v.commit_id, v.parent, v.created_at, v.message,
                    v.metadata_json, v.total_size, v.file_count,
                )
                .where(v.model_id == mid)
                .order_by(v.created_at.desc(), v.id.desc())
            )  # fmt: skip
            return [
                VersionRecord(
                    model=model,
                    label=r.label,
                    commit=r.commit_id,
                    parent=r.parent,
                    created=_aware(r.created_at),
                    message=r.message,
                    metadata=json.loads(r.metadata_json),
                    total_size=r.total_size,
                    file_count=r.file_count,
                    aliases=tuple(aliases.get(r.id, ())),
                )
                for r in rows
            ]

    def latest_label(self, model: str) -> str | None:
        """The label of ``model``'s newest version (``resolve(model, None)``'s order), if any."""
        with self._read() as s:
            return s.scalar(
                select(VersionRow.label)
                .join(ModelRow, ModelRow.id == VersionRow.model_id)
                .where(ModelRow.name == model)
                .order_by(VersionRow.created_at.desc(), VersionRow.id.desc())
                .limit(1)
            )

    def label_exists(self, model: str, label: str) -> bool:
        with self._read() as s:
            mid = s.scalar(select(ModelRow.id).where(ModelRow.name == model))
            if mid is None:
                return False
            return bool(
                s.scalar(select(VersionRow.id).where(VersionRow.model_id == mid, VersionRow.label == label))
            )

    def resolve(self, model: str, revision: str | None) -> VersionRecord:
        """A label, an alias, a full commit id or a unique commit prefix; ``None`` or ``latest`` is the
        newest version. A revision that names one version as a label or alias and another by its
        commit id is ambiguous (git's rule): the error names both."""
        with self._read() as s:
            mid = self._model_id(s, model)
            base = select(VersionRow).where(VersionRow.model_id == mid)
            if revision is None or revision == LATEST:
                newest = base.order_by(VersionRow.created_at.desc(), VersionRow.id.desc()).limit(1)
                row = s.scalars(newest).first()  # one row read, not every version's
                if row is None:
                    raise RevisionNotFoundError(f"model {model!r} has no versions")
                return self._record(s, model, row)
            named = s.scalars(base.where(VersionRow.label == revision)).first()
            kind = "label"
            if named is None:
                vid = s.scalar(
                    select(AliasRow.version_id).where(AliasRow.model_id == mid, AliasRow.name == revision)
                )
                if vid is not None:
                    named, kind = s.get(VersionRow, vid), "alias"
            by_commit: list[VersionRow] = []
            if looks_like_commit(revision):
                by_commit = list(
                    s.scalars(
                        base.where(VersionRow.commit_id.startswith(revision)).order_by(
                            VersionRow.created_at.desc(), VersionRow.id.desc()
                        )
                    )
                )
            commits = {r.commit_id for r in by_commit}
            if named is not None and commits - {named.commit_id}:
                other = next(r for r in by_commit if r.commit_id != named.commit_id)
                raise AmbiguousRevisionError(
                    f"revision {revision!r} of {model} is ambiguous: {kind} {revision!r} is "
                    f"{model}@{named.label} (commit {named.commit_id[:12]}), and it is also a prefix "
                    f"of commit {other.commit_id} ({model}@{other.label}); give the full commit id "
                    "or another name"
                )
            if named is not None:
                return self._record(s, model, named)
            if len(commits) > 1:
                raise AmbiguousRevisionError(
                    f"commit prefix {revision!r} of {model} matches {len(commits)} versions; give more digits"
                )
            if not by_commit:
                raise RevisionNotFoundError(f"revision {revision!r} of model {model!r} not found")
            return self._record(s, model, by_commit[0])

    def delete_version(self, model: str, label: str) -> None:
        with self._write() as s:
            mid = self._model_id(s, model)
            row = s.scalars(
                select(VersionRow).where(VersionRow.model_id == mid, VersionRow.label == label)
            ).first()
            if row is None:
                raise RevisionNotFoundError(f"version {model}@{label} not found")
            s.execute(delete(AliasRow).where(AliasRow.version_id == row.id))
            s.delete(row)
            s.flush()
            if not s.scalar(select(func.count()).select_from(VersionRow).where(VersionRow.model_id == mid)):
                s.execute(delete(ModelRow).where(ModelRow.id == mid))

    def version_commit(self, model: str, label: str) -> str | None:
        """The commit of ``model@label`` if that exact label is indexed."""
        with self._read() as s:
            return s.scalar(
                select(VersionRow.commit_id)
                .join(ModelRow, ModelRow.id == VersionRow.model_id)
                .where(ModelRow.name == model, VersionRow.label == label)
            )

    def all_refs(self) -> dict[tuple[str, str, str], str]:
        """{(model, "version", label): commit, (model, "alias", alias): label} for everything indexed."""
        out: dict[tuple[str, str, str], str] = {}
        with self._read() as s:
            for model, label, commit in s.execute(
                select(ModelRow.name, VersionRow.label, VersionRow.commit_id).join(
                    VersionRow, VersionRow.model_id == ModelRow.id
                )
            ):
                out[(model, "version", label)] = commit
            for model, alias, label in s.execute(
                select(ModelRow.name, AliasRow.name, VersionRow.label)
                .join(AliasRow, AliasRow.model_id == ModelRow.id)
                .join(VersionRow, VersionRow.id == AliasRow.version_id)
            ):
                out[(model, "alias", alias)] = label
        return out

    def live_commits(self) -> set[str]:
        with self._read() as s:
            return set(s.scalars(select(VersionRow.commit_id).distinct()))

    # ---- aliases --------------------------------------------------------------------------------

    def set_alias(self, model: str, alias: str, label: str) -> None:
        with self._write() as s:
            mid = self._model_id(s, model)
            if s.scalar(select(VersionRow.id).where(VersionRow.model_id == mid, VersionRow.label == alias)):
                raise ConflictError(f"{alias!r} is a version label of {model}; an alias cannot shadow it")
            vid = s.scalar(select(VersionRow.id).where(VersionRow.model_id == mid, VersionRow.label == label))
            if vid is None:
                raise RevisionNotFoundError(f"version {model}@{label} not found")
            existing = s.scalars(
                select(AliasRow).where(AliasRow.model_id == mid, AliasRow.name == alias)
            ).first()
            if existing is None:
                s.add(AliasRow(model_id=mid, name=alias, version_id=vid))
            else:
                existing.version_id = vid

    def remove_alias(self, model: str, alias: str) -> None:
        with self._write() as s:
            mid = self._model_id(s, model)
            result = s.execute(delete(AliasRow).where(AliasRow.model_id == mid, AliasRow.name == alias))
            if not getattr(result, "rowcount", 0):
                raise RevisionNotFoundError(f"alias {alias!r} of model {model!r} not found")

    def aliases(self, model: str) -> dict[str, str]:
        """alias -> version label."""
        with self._read() as s:
            mid = self._model_id(s, model)
            rows = s.execute(
                select(AliasRow.name, VersionRow.label)
                .join(VersionRow, VersionRow.id == AliasRow.version_id)
                .where(AliasRow.model_id == mid)
            )
            return {name: label for name, label in rows}

    # ---- manifests and recipes -----------------------------------------------------------------

    def get_manifest(self, commit: str) -> bytes | None:
        with self._read() as s:
            row = s.get(ManifestRow, commit)
            return None if row is None else row.body

    def all_manifests(self) -> list[tuple[str, bytes]]:
        with self._read() as s:
            return [(r.commit_id, r.body) for r in s.scalars(select(ManifestRow))]

    def put_recipe(self, name: str, size: int, body: bytes, created: datetime | None = None) -> None:
        """Record a recipe by its name in the store; ``body`` is the object exactly as stored
        (sealed in an encrypted model, so the index holds nothing the bucket does not)."""
        self.put_recipes([(name, size, body)], created)

    def put_recipes(self, recipes: Sequence[tuple[str, int, bytes]], created: datetime | None = None) -> None:
        """``put_recipe`` for a whole push in one transaction (a commit per file of a
        10,000-file push cost more than hashing it)."""
        when = created or utcnow()
        todo = {r[0]: r for r in recipes}
        names = list(todo)
        with self._write() as s:
            again: list[str] = []
            for i in range(0, len(names), 500):
                q = select(RecipeRow.name).where(RecipeRow.name.in_(names[i : i + 500]))
                again.extend(s.scalars(q))
            for name in again:  # in use again: restart its grace period
                del todo[name]
            # plain statements, not ORM rows: building an object per recipe of a 10,000-file push
            # cost more than the inserts
            for i in range(0, len(again), _BATCH):
                s.execute(
                    update(RecipeRow).where(RecipeRow.name.in_(again[i : i + _BATCH])).values(created_at=when)
                )
            rows = [{"name": n, "size": k, "body": body, "created_at": when} for n, k, body in todo.values()]
            for i in range(0, len(rows), _BATCH):
                s.execute(insert(RecipeRow), rows[i : i + _BATCH])

    def get_recipes(self, names: Sequence[str]) -> dict[str, bytes]:
        """The bodies of the recipes among ``names`` that the index holds, in one pass."""
        unique = list(dict.fromkeys(names))
        found: dict[str, bytes] = {}
        with self._read() as s:
            for i in range(0, len(unique), _BATCH):
                q = select(RecipeRow.name, RecipeRow.body).where(RecipeRow.name.in_(unique[i : i + _BATCH]))
                found.update((name, body) for name, body in s.execute(q))
        return found

    def get_recipe(self, name: str) -> bytes | None:
        with self._read() as s:
            row = s.get(RecipeRow, name)
            return None if row is None else row.body

    def recipe_names(self, before: datetime | None = None) -> set[str]:
        """The names of the recipe rows; with ``before``, of those last put before it (gc's grace
        period: a push puts again the rows it reuses)."""
        q = select(RecipeRow.name)
        if before is not None:
            q = q.where(RecipeRow.created_at < before)
        with self._read() as s:
            return set(s.scalars(q))

    # ---- packs and chunks ----------------------------------------------------------------------

    def add_pack(
        self, pack_id: str, size: int, entries: Sequence[PackEntry], created: datetime | None = None
    ) -> bool:
        """Record a durable pack and every chunk in it; False if it was already recorded.

        A chunk may be recorded in several packs (another machine's push, gc copying live
        chunks out of a sparse pack); a read takes the copy with the highest key slot, which
        within an encrypted model is the newest seal (``keys rotate --reencrypt``).
        """
        with self._write() as s:
            if s.get(PackRow, pack_id) is not None:
                return False
            s.add(PackRow(id=pack_id, size=size, created_at=created or utcnow()))
            s.flush()
            rows = list({e.chunk_id: _chunk_row(pack_id, e) for e in entries}.values())
            for i in range(0, len(rows), _BATCH):
                s.execute(insert(ChunkRow), rows[i : i + _BATCH])
            return True

    def add_packs(self, packs: Sequence[tuple[str, int, Sequence[PackEntry], datetime | None]]) -> None:
        """``add_pack`` for many packs in one transaction (full scans and recover)."""
        with self._write() as s:
            for pack_id, size, entries, created in packs:
                if s.get(PackRow, pack_id) is not None:
                    continue
                s.add(PackRow(id=pack_id, size=size, created_at=created or utcnow()))
                s.flush()
                rows = list({e.chunk_id: _chunk_row(pack_id, e) for e in entries}.values())
                for i in range(0, len(rows), _BATCH):
                    s.execute(insert(ChunkRow), rows[i : i + _BATCH])

    def drop_packs(self, pack_ids: Iterable[str]) -> None:
        """Forget packs (deleted from the store); chunks keep their other locations."""
        plist = list(pack_ids)
        with self._write() as s:
            for i in range(0, len(plist), _BATCH):
                part = plist[i : i + _BATCH]
                s.execute(delete(ChunkRow).where(ChunkRow.pack_id.in_(part)))
                s.execute(delete(PackRow).where(PackRow.id.in_(part)))

    def drop_objects(
        self,
        commits: Iterable[str],
        recipes: Iterable[str],
        *,
        unused_rows: Iterable[str] = (),
        before: datetime | None = None,
    ) -> None:
        """Forget manifests and recipes deleted from the store, and, in the same transaction,
        ``unused_rows``: recipe rows without an object that no live version needs (the inline
        recipes of collected files), each only if it was last put before ``before``."""
        clist, rlist, ulist = list(commits), list(recipes), list(unused_rows)
        if ulist and before is None:
            raise ValueError("unused recipe rows are dropped only with a grace cutoff (before)")
        with self._write() as s:
            for i in range(0, len(clist), _BATCH):
                s.execute(delete(ManifestRow).where(ManifestRow.commit_id.in_(clist[i : i + _BATCH])))
            for i in range(0, len(rlist), _BATCH):
                s.execute(delete(RecipeRow).where(RecipeRow.name.in_(rlist[i : i + _BATCH])))
            for i in range(0, len(ulist), _BATCH):
                s.execute(
                    delete(RecipeRow).where(
                        RecipeRow.name.in_(ulist[i : i + _BATCH]), RecipeRow.created_at < before
                    )
                )

    def has_pack(self, pack_id: str) -> bool:
        with self._read() as s:
            return s.get(PackRow, pack_id) is not None

    def chunk_slot(self, chunk_id: bytes) -> int | None:
        """The dedup probe of an encrypted push: the key slot the chunk is sealed under, if indexed."""
        cur = self._probe_conn().cursor()
        try:
            cur.execute(
                "SELECT max(key_slot) FROM chunks WHERE id = ?"
                if self.engine.dialect.paramstyle == "qmark"
                else "SELECT max(key_slot) FROM chunks WHERE id = %s",
                (chunk_id,),
            )
            row = cur.fetchone()
            return None if row is None or row[0] is None else int(row[0])
        finally:
            cur.close()

    def locate_chunks(
        self, ids: Sequence[bytes], include_condemned: bool = True
    ) -> dict[bytes, ChunkLocation]:
        """One location per chunk, by ``locations.best_locations``'s rule."""
        unique = list(dict.fromkeys(ids))
        rows: list[Any] = []
        with self._read() as s:
            for i in range(0, len(unique), _BATCH):
                # plain columns, not ORM rows: a push or pull of 10,000 files locates every chunk,
                # and building an ORM object per row cost more than the query
                q = (
                    select(
                        ChunkRow.id,
                        ChunkRow.pack_id,
                        ChunkRow.offset,
                        ChunkRow.stored_len,
                        ChunkRow.raw_len,
                        ChunkRow.codec,
                        ChunkRow.key_slot,
                        PackRow.condemned_at,
                    )
                    .join(PackRow, PackRow.id == ChunkRow.pack_id)
                    .where(ChunkRow.id.in_(unique[i : i + _BATCH]))
                )
                rows.extend(s.execute(q))
        return best_locations(rows, include_condemned)

    def chunk_packs(self) -> dict[str, list[tuple[bytes, int, int, int, int, int]]]:
        """pack id -> [(chunk id, offset, stored length, raw length, codec, key slot)] for every
        recorded pack (gc's planning)."""
        out: dict[str, list[tuple[bytes, int, int, int, int, int]]] = {}
        with self._read() as s:
            for pid in s.scalars(select(PackRow.id)):
                out[pid] = []
            for r in s.scalars(select(ChunkRow)):
                out.setdefault(r.pack_id, []).append(
                    (r.id, r.offset, r.stored_len, r.raw_len, r.codec, r.key_slot)
                )
        return out

    def chunks_in_pack(self, pack_id: str) -> list[tuple[bytes, ChunkLocation]]:
        with self._read() as s:
            rows = s.scalars(select(ChunkRow).where(ChunkRow.pack_id == pack_id).order_by(ChunkRow.offset))
            return [
                (r.id, ChunkLocation(r.pack_id, r.offset, r.stored_len, r.raw_len, r.codec, r.key_slot))
                for r in rows
            ]

    def packs(self) -> list[PackRecord]:
        with self._read() as s:
            return [
                PackRecord(
                    r.id, r.size, _aware(r.created_at), _aware(r.condemned_at) if r.condemned_at else None
                )
                for r in s.scalars(select(PackRow))
            ]

    def pack_ids_for_chunks(self, ids: Iterable[bytes]) -> set[str]:
        return {loc.pack_id for loc in self.locate_chunks(list(ids)).values()}

    def known_objects(self) -> tuple[set[str], set[str], set[str]]:
        """(pack ids, manifest commits, recipe names) the index knows, for finding orphans."""
        with self._read() as s:
            return (
                set(s.scalars(select(PackRow.id))),
                set(s.scalars(select(ManifestRow.commit_id))),
                set(s.scalars(select(RecipeRow.name))),
            )

    def stats(self) -> dict[str, Any]:
        with self._read() as s:
            return {
                "models": s.scalar(select(func.count()).select_from(ModelRow)) or 0,
                "versions": s.scalar(select(func.count()).select_from(VersionRow)) or 0,
                "packs": s.scalar(select(func.count()).select_from(PackRow)) or 0,
                "pack_bytes": s.scalar(select(func.coalesce(func.sum(PackRow.size), 0))) or 0,
                "chunks": s.scalar(select(func.count()).select_from(ChunkRow)) or 0,
                "chunk_raw_bytes": s.scalar(select(func.coalesce(func.sum(ChunkRow.raw_len), 0))) or 0,
            }

    # ---- state of the index itself --------------------------------------------------------------

    def get_state(self, name: str) -> str | None:
        with self._read() as s:
            row = s.get(StateRow, name)
            return None if row is None else row.value

    def set_state(self, name: str, value: str) -> None:
        with self._write() as s:
            row = s.get(StateRow, name)
            if row is None:
                s.add(StateRow(name=name, value=value))
            else:
                row.value = value

    # ---- recovery -------------------------------------------------------------------------------

    def replace_with(self, other: RegistryIndex) -> None:
        """Make this index a copy of ``other``, in one transaction: readers in other processes see
        the old rows or the new ones, never a half-built index (``recover`` builds aside)."""
        order = (ModelRow, VersionRow, AliasRow, ManifestRow, RecipeRow, PackRow, ChunkRow, StateRow)
        with self._write() as s:
            for table in reversed(order):
                s.execute(delete(table))
            for table in order:
                t = Base.metadata.tables[table.__tablename__]
                columns = list(t.columns)
                names = [c.name for c in columns]
                with other._read() as src:
                    rows = [dict(zip(names, r, strict=True)) for r in src.execute(select(*columns))]
                for i in range(0, len(rows), _BATCH):
                    s.execute(insert(t), rows[i : i + _BATCH])

    def clear(self) -> None:
        """Drop every row (recover rebuilds them from the store)."""
        with self._write() as s:
            tables = (AliasRow, VersionRow, ModelRow, ManifestRow, RecipeRow, ChunkRow, PackRow, StateRow)
            for table in tables:
                s.execute(delete(table))


def _chunk_row(pack_id: str, e: PackEntry) -> dict[str, Any]:
    return {
        "id": e.chunk_id,
        "pack_id": pack_id,
        "offset": e.offset,
        "stored_len": e.stored_len,
        "raw_len": e.raw_len,
        "codec": e.codec,
        "key_slot": e.key_slot,
    }


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # transactions are begun by us (``_sqlite_begin``), not the driver
    cur = dbapi_conn.cursor()
    # the wait first: switching a new database to WAL takes its lock, which another process that
    # opens it at the same moment may hold
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()
