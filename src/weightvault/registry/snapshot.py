"""A read-only, consistent view of a SQLite index through the standard library alone.

The CLI's read commands (``cli/fastread.py``) answer from this instead of ``RegistryIndex``:
SQLAlchemy's ORM alone costs more start-up time than the whole answer. The queries are those
``RegistryIndex`` runs, in the same order and with the same ``ORDER BY`` (the rows, and so the
output, come out the same); a database of another schema revision is refused
(``SnapshotUnavailable``) and the caller takes the full path, which migrates it.

The connection is opened read-only (``mode=ro``): it never creates, migrates or writes the file.
Every read runs in one transaction, so with SQLite's WAL the view is one committed state even
while another process writes.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from weightvault.core.errors import ModelNotFoundError
from weightvault.core.revision import LATEST, looks_like_commit
from weightvault.core.types import ListedVersion, ModelInfo, VersionInfo
from weightvault.registry.locations import BATCH, ChunkLocation, best_locations
from weightvault.registry.migrations import HEAD

if TYPE_CHECKING:
    from weightvault.core.manifest import Manifest

_VERSION_COLUMNS = "id, label, commit_id, parent, created_at, message, metadata_json, total_size, file_count"
_NEWEST_FIRST = "ORDER BY created_at DESC, id DESC"


class SnapshotUnavailable(Exception):
    """This index (or this question) needs the full ``RegistryIndex``: the caller falls back."""


def _when(value: Any) -> datetime:
    """A stored timestamp as ``RegistryIndex`` returns it (aware, UTC when stored naive)."""
    if not isinstance(value, str):
        raise SnapshotUnavailable(f"timestamp {value!r} is not stored as text")
    dt = datetime.fromisoformat(value)
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _iso(value: Any) -> str:
    """``_when(value).isoformat()`` in a quarter of the time (ten thousand rows of ``ls MODEL
    --json``): no aware datetime is made, UTC's offset is written as ``isoformat`` writes it."""
    if not isinstance(value, str):
        raise SnapshotUnavailable(f"timestamp {value!r} is not stored as text")
    dt = datetime.fromisoformat(value)
    return dt.isoformat() + "+00:00" if dt.tzinfo is None else dt.isoformat()


class IndexSnapshot:
    """Models, versions, aliases and manifests of one committed state of the index."""

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise SnapshotUnavailable(f"no index at {path}")
        escaped = str(path.absolute()).replace("%", "%25").replace("?", "%3f").replace("#", "%23")
        uri = f"file:{escaped}?mode=ro"
        try:
            self._db = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=30)
        except sqlite3.Error as exc:
            raise SnapshotUnavailable(f"cannot open {path} read-only: {exc}") from None
        try:
            self._db.execute("BEGIN")
            revision = self._db.execute("SELECT version_num FROM alembic_version").fetchall()
        except sqlite3.Error as exc:
            self.close()
            raise SnapshotUnavailable(f"cannot read {path}: {exc}") from None
        if revision != [(HEAD,)]:
            self.close()
            raise SnapshotUnavailable(f"index schema {revision!r} is not {HEAD!r}")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> IndexSnapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def state(self, name: str) -> str | None:
        row = self._db.execute("SELECT value FROM store_state WHERE name = ?", (name,)).fetchone()
        return None if row is None else str(row[0])

    def model_names(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT name FROM models ORDER BY models.name")]

    def _model_row(self, name: str) -> tuple[int, datetime]:
        row = self._db.execute("SELECT id, created_at FROM models WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise ModelNotFoundError(f"model {name!r} not found")
        return int(row[0]), _when(row[1])

    def _info(self, model: str, r: tuple[Any, ...], aliases: tuple[str, ...]) -> VersionInfo:
        return VersionInfo(
            model=model,
            label=r[1],
            commit=r[2],
            created=_when(r[4]),
            message=r[5],
            metadata=json.loads(r[6]),
            total_size=r[7],
            file_count=r[8],
            parent=r[3],
            aliases=aliases,
        )

    def _aliases_by_version(self, mid: int) -> dict[int, tuple[str, ...]]:
        by_version: dict[int, list[str]] = {}
        for vid, alias in self._db.execute(
            "SELECT aliases.version_id, aliases.name FROM aliases WHERE aliases.model_id = ? "
            "ORDER BY aliases.name",
            (mid,),
        ):
            by_version.setdefault(vid, []).append(alias)
        return {vid: tuple(names) for vid, names in by_version.items()}

    def _alias_map(self, mid: int) -> dict[str, str]:
        return {
            alias: label
            for alias, label in self._db.execute(
                "SELECT aliases.name, versions.label FROM aliases "
                "JOIN versions ON versions.id = aliases.version_id WHERE aliases.model_id = ?",
                (mid,),
            )
        }

    def _version_rows(self, mid: int) -> sqlite3.Cursor:
        query = f"SELECT {_VERSION_COLUMNS} FROM versions WHERE model_id = ? {_NEWEST_FIRST}"
        return self._db.execute(query, (mid,))

    def model(self, name: str) -> ModelInfo:
        """As ``Vault.model``: the versions newest first, each with its aliases (two queries
        whatever the count), and the alias map in the index's own order."""
        mid, created = self._model_row(name)
        by_version = self._aliases_by_version(mid)
        versions = tuple(self._info(name, r, by_version.get(r[0], ())) for r in self._version_rows(mid))
        return ModelInfo(name, created, versions, self._alias_map(mid))

    def listing(self, name: str) -> tuple[datetime, list[ListedVersion], dict[str, str]]:
        """``model`` as ``ls MODEL --json`` prints it, without an object per version: (when the
        model was made, its versions newest first as ``ListedVersion`` tuples, the alias map).
        The same queries, so the same rows in the same order."""
        mid, created = self._model_row(name)
        by_version = self._aliases_by_version(mid)
        no_aliases: tuple[str, ...] = ()
        empty = "{}"
        rows = [
            (
                label,
                commit,
                _iso(when),
                message,
                {} if meta == empty else json.loads(meta),
                size,
                count,
                parent,
                by_version.get(vid, no_aliases),
            )
            for vid, label, commit, parent, when, message, meta, size, count in self._version_rows(mid)
        ]
        return created, rows, self._alias_map(mid)

    def resolve(self, model: str, revision: str | None) -> VersionInfo:
        """The version a revision names, when it names exactly one by the rules of
        ``RegistryIndex.resolve``; anything else (not found, ambiguous) is left to the full
        path, whose error says why."""
        mid, _created = self._model_row(model)
        select = f"SELECT {_VERSION_COLUMNS} FROM versions WHERE model_id = ?"
        if revision is None or revision == LATEST:
            row = self._db.execute(f"{select} {_NEWEST_FIRST} LIMIT 1", (mid,)).fetchone()
        else:
            row = self._db.execute(f"{select} AND label = ?", (mid, revision)).fetchone()
            if row is None:
                row = self._db.execute(
                    f"{select} AND id = (SELECT version_id FROM aliases WHERE model_id = ? AND name = ?)",
                    (mid, mid, revision),
                ).fetchone()
            if looks_like_commit(revision):
                by_commit = self._db.execute(
                    f"{select} AND commit_id LIKE ? || '%' {_NEWEST_FIRST}", (mid, revision)
                ).fetchall()
                commits = {r[2] for r in by_commit}
                if row is not None and commits - {row[2]}:
                    raise SnapshotUnavailable(f"revision {revision!r} is ambiguous")
                if row is None and len(commits) == 1:
                    row = by_commit[0]
        if row is None:
            raise SnapshotUnavailable(f"revision {revision!r} of {model!r} not found here")
        aliases = tuple(
            a
            for (a,) in self._db.execute(
                "SELECT name FROM aliases WHERE version_id = ? ORDER BY name", (row[0],)
            )
        )
        return self._info(model, row, aliases)

    def with_files(
        self, v: VersionInfo, open_sealed: Callable[[str, bytes], Manifest] | None = None
    ) -> VersionInfo:
        """The version with its manifest's files, lineage and safety, as ``Vault.show`` gives it
        (the manifest checked against its commit id, as the store checks it); a manifest the
        index lacks is for the full path, and so is a sealed (encrypted) one unless
        ``open_sealed(commit, body)`` opens it (and makes every check the full path makes)."""
        from dataclasses import replace

        from weightvault.core.errors import FormatError
        from weightvault.core.manifest import Manifest

        body = self.manifest_body(v.commit)
        if body is None:
            raise SnapshotUnavailable("the manifest is not in the index")
        if not body.lstrip().startswith(b"{"):
            if open_sealed is None:
                raise SnapshotUnavailable("the manifest is not a plain one in the index")
            try:
                manifest = open_sealed(v.commit, body)
            except Exception:  # a wrong key, a damaged or moved manifest: the full path reports it
                raise SnapshotUnavailable("the full path opens the manifest") from None
        else:
            try:
                manifest = Manifest.from_bytes(body)
            except FormatError:
                raise SnapshotUnavailable("the full path reports the manifest") from None
            if manifest.commit_id() != v.commit:
                raise SnapshotUnavailable("the full path reports the manifest")
        return replace(
            v,
            files=tuple(sorted(manifest.files, key=lambda f: f.path)),
            lineage=tuple(dict(x) for x in manifest.lineage),
            safety={k: dict(x) for k, x in manifest.safety.items()},
        )

    def manifest_body(self, commit: str) -> bytes | None:
        row = self._db.execute("SELECT body FROM manifests WHERE commit_id = ?", (commit,)).fetchone()
        return None if row is None else bytes(row[0])

    def _batches(self, query: str, keys: Sequence[Any]) -> Iterator[tuple[Any, ...]]:
        """Rows of ``query`` (its ``IN`` list written as ``{}``) for ``keys``, ``BATCH`` at a time."""
        unique = list(dict.fromkeys(keys))
        for i in range(0, len(unique), BATCH):
            part = unique[i : i + BATCH]
            yield from self._db.execute(query.format(",".join("?" * len(part))), part)

    def get_recipes(self, names: Sequence[str]) -> dict[str, bytes]:
        """As ``RegistryIndex.get_recipes``: the bodies of the recipes among ``names`` it holds."""
        query = "SELECT name, body FROM recipes WHERE name IN ({})"
        return {name: bytes(body) for name, body in self._batches(query, names)}

    def locate_chunks(self, ids: Sequence[bytes]) -> dict[bytes, ChunkLocation]:
        """As ``RegistryIndex.locate_chunks``: the same rows, the copy picked by the same rule."""
        query = (
            'SELECT chunks.id, chunks.pack_id, chunks."offset", chunks.stored_len, chunks.raw_len, '
            "chunks.codec, chunks.key_slot, packs.condemned_at FROM chunks "
            "JOIN packs ON packs.id = chunks.pack_id WHERE chunks.id IN ({})"
        )
        return best_locations(self._batches(query, ids))
