"""Domain objects the vault façade returns; every interface (SDK, CLI, server) speaks these."""

from __future__ import annotations

from collections.abc import Mapping
from copy import deepcopy
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from weightvault.core.manifest import FileEntry

#: one version as ``ls MODEL`` lists it, in ``VersionInfo.to_json``'s order of fields: label,
#: commit, created (ISO 8601), message, metadata, total_size, file_count, parent, aliases. A
#: plain tuple: building a ``VersionInfo`` per row was most of listing ten thousand versions.
ListedVersion = tuple[str, str, str, str, dict[str, Any], int, int, str | None, tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class VersionInfo:
    model: str
    label: str
    commit: str
    created: datetime
    message: str
    metadata: dict[str, str]
    total_size: int
    file_count: int
    parent: str | None = None
    aliases: tuple[str, ...] = ()
    files: tuple[FileEntry, ...] = ()
    lineage: tuple[dict[str, Any], ...] = ()
    #: pickle-based files by path: what they import and the verdict (``vault.safety``)
    safety: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self, with_files: bool = False) -> dict[str, Any]:
        """The fields in their order (``files`` only ``with_files``), built by hand: ``asdict``'s
        deep copy cost most of ``ls MODEL --json`` with thousands of versions."""
        out: dict[str, Any] = {
            "model": self.model,
            "label": self.label,
            "commit": self.commit,
            "created": self.created.isoformat(),
            "message": self.message,
            "metadata": dict(self.metadata),
            "total_size": self.total_size,
            "file_count": self.file_count,
            "parent": self.parent,
            "aliases": list(self.aliases),
        }
        if with_files:
            out["files"] = [f.to_json() for f in self.files]
        out["lineage"] = list(self.lineage)
        out["safety"] = {path: deepcopy(finding) for path, finding in self.safety.items()}
        return out


@dataclass(frozen=True, slots=True)
class ModelInfo:
    name: str
    created: datetime
    versions: tuple[VersionInfo, ...] = ()
    aliases: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "created": self.created.isoformat(),
            "versions": [v.to_json() for v in self.versions],
            "aliases": dict(self.aliases),
        }


@dataclass(frozen=True, slots=True)
class PushResult:
    version: VersionInfo
    bytes_read: int
    bytes_written: int  # stored bytes of new chunks (after any compression)
    chunks_total: int
    chunks_new: int
    seconds: float
    #: replica -> "ok", "background" or "error: …" (empty without replicas)
    replication: dict[str, str] = field(default_factory=dict)
    #: the files equal the latest version's: no new version was made, ``version`` is that one
    unchanged: bool = False


@dataclass(frozen=True, slots=True)
class PullResult:
    version: VersionInfo
    files: tuple[str, ...]
    bytes_total: int
    bytes_from_cache: int
    bytes_from_store: int
    seconds: float
    #: copies that were missing, corrupt or unreachable and were read from another replica instead
    fallbacks: tuple[str, ...] = ()
    #: ``include`` patterns that matched no file of the version
    unmatched_includes: tuple[str, ...] = ()
    #: the link mode asked for, and how many files were placed each way: "reflink", "hardlink",
    #: "copy" (from the cache) or "written" (from the store straight into the destination)
    link_mode: str = "auto"
    placement: Mapping[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class VerifyReport:
    checked_versions: int = 0
    checked_chunks: int = 0
    checked_bytes: int = 0
    problems: list[str] = field(default_factory=list)
    #: "model@label" -> the problems that make it unreadable.
    affected_versions: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checked_versions": self.checked_versions,
            "checked_chunks": self.checked_chunks,
            "checked_bytes": self.checked_bytes,
            "problems": self.problems,
            "affected_versions": self.affected_versions,
        }


@dataclass(frozen=True, slots=True)
class GcReport:
    """What a gc deleted (or, with ``dry_run``, would delete); ``bytes_freed`` is net of the live
    bytes copied out of repacked packs."""

    packs_deleted: int
    bytes_freed: int
    packs_repacked: int
    bytes_rewritten: int
    manifests_deleted: int
    recipes_deleted: int
    temp_files_deleted: int
    secondary_objects_deleted: int
    dry_run: bool = False
    problems: list[str] = field(default_factory=list)
    new_packs: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RecoverReport:
    """What ``recover`` rebuilt (counts by kind) and what it could not read, each with the reason."""

    counts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def __getitem__(self, kind: str) -> int:
        return self.counts[kind]

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {**self.counts, "problems": self.problems}
