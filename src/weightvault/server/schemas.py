"""Request and response bodies of REST API v1: the OpenAPI document is generated from these."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from weightvault.core.access import AuditEntry, GrantInfo, TokenInfo
from weightvault.core.manifest import FileEntry
from weightvault.core.types import ModelInfo, PushResult, VersionInfo

T = TypeVar("T")
F = TypeVar("F", bound=BaseModel)
MAX_PAGE = 1000


class Error(BaseModel):
    """Every error response: a stable machine code (``core.errors``) and a sentence for people."""

    code: str
    message: str


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


class FileOut(BaseModel):
    path: str
    size: int
    sha256: str

    @classmethod
    def of(cls, f: FileEntry) -> FileOut:
        return cls(path=f.path, size=f.size, sha256=f.sha256)


class VersionOut(BaseModel):
    model: str
    label: str
    commit: str
    created: datetime
    message: str
    metadata: dict[str, str]
    total_size: int
    file_count: int
    parent: str | None
    aliases: list[str]
    lineage: list[dict[str, Any]]
    #: pickle scan findings by path (see vault.safety)
    safety: dict[str, dict[str, Any]] = Field(default_factory=dict)
    files: list[FileOut] | None = None

    @classmethod
    def of(cls, v: VersionInfo, with_files: bool = False) -> VersionOut:
        return cls(
            model=v.model,
            label=v.label,
            commit=v.commit,
            created=v.created,
            message=v.message,
            metadata=dict(v.metadata),
            total_size=v.total_size,
            file_count=v.file_count,
            parent=v.parent,
            aliases=list(v.aliases),
            lineage=[dict(x) for x in v.lineage],
            safety={k: dict(x) for k, x in v.safety.items()},
            files=[FileOut.of(f) for f in v.files] if with_files else None,
        )


class ModelOut(BaseModel):
    name: str
    created: datetime
    version_count: int
    latest: VersionOut | None
    aliases: dict[str, str]
    public_read: bool

    @classmethod
    def of(cls, m: ModelInfo, public: bool) -> ModelOut:
        return cls(
            name=m.name,
            created=m.created,
            version_count=len(m.versions),
            latest=VersionOut.of(m.versions[0]) if m.versions else None,
            aliases=dict(m.aliases),
            public_read=public,
        )


class AliasIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    revision: str = Field(min_length=1, max_length=200)


class PolicyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    public_read: bool


class ChunkIdsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ids: list[str] = Field(max_length=100_000, description="chunk ids, 64 hex digits each")


class ChunkIdsOut(BaseModel):
    missing: list[str]


class ChunkUploadOut(BaseModel):
    received: int
    stored: int
    bytes_stored: int


class FileIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str = Field(min_length=1, max_length=1024)
    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    chunks: list[tuple[str, int]] = Field(description="[chunk id hex, raw length] in file order")


class CommitIn(BaseModel, Generic[F]):
    """The body of a version commit, whichever way its files were sent (chunks or whole files)."""

    model_config = ConfigDict(extra="forbid")
    files: list[F] = Field(min_length=1, max_length=100_000)
    version: str | None = Field(None, max_length=128)
    message: str = Field("", max_length=10_000)
    metadata: dict[str, str] = Field(default_factory=dict)
    lineage: list[dict[str, Any]] = Field(default_factory=list, max_length=1000)
    parent: str | None = Field(None, pattern=r"^[0-9a-f]{40}$")
    refuse_unsafe: bool = Field(False, description="refuse pickles that would run code when loaded")


class VersionIn(CommitIn[FileIn]):
    pass


class PushOut(BaseModel):
    version: VersionOut
    #: the files equal the latest version's: no version was made, ``version`` is that one
    unchanged: bool = False
    chunks_total: int
    seconds: float
    replication: dict[str, str]

    @classmethod
    def of(cls, r: PushResult) -> PushOut:
        return cls(
            version=VersionOut.of(r.version),
            unchanged=r.unchanged,
            chunks_total=r.chunks_total,
            seconds=r.seconds,
            replication=r.replication,
        )


class UploadModeOut(BaseModel):
    """How a push of this model sends its data: ``chunks`` (the client chunks and names them) or
    ``files`` (whole files; the server chunks, compresses and seals them, as an embedded push)."""

    mode: str
    encrypted: bool
    compression: str


class AnnouncedFileIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str = Field(min_length=1, max_length=1024)
    size: int = Field(ge=0, le=1 << 44)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="plain SHA-256 of the whole file")


class FilesMissingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    files: list[AnnouncedFileIn] = Field(max_length=100_000)


class FilesMissingOut(BaseModel):
    #: SHA-256s of the files to upload (each once); the server can rebuild the others itself
    missing: list[str]


class UploadOut(BaseModel):
    id: str
    path: str
    size: int
    sha256: str
    #: bytes received so far: the next request sends from here
    offset: int
    #: the file is stored in the vault (the session is gone); commit may name it
    complete: bool


class FileVersionIn(CommitIn[AnnouncedFileIn]):
    pass


class StoreOut(BaseModel):
    """What a client needs to chunk files the way this vault does (so pushes deduplicate)."""

    api_version: str
    server_version: str
    chunk_min_size: int
    chunk_avg_size: int
    chunk_max_size: int
    max_upload_bytes: int


class WhoAmI(BaseModel):
    principal: str | None
    scope: str
    is_admin: bool


class TokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    principal: str = Field(min_length=1, max_length=64)
    scope: str = "read"
    expires_in_seconds: int | None = Field(90 * 86400, ge=1, le=10 * 366 * 86400)
    description: str = Field("", max_length=200)
    admin: bool | None = None


class TokenOut(BaseModel):
    id: int
    principal: str
    scope: str
    kind: str
    description: str
    last_chars: str
    created: datetime
    expires: datetime | None
    revoked: datetime | None
    last_used: datetime | None

    @classmethod
    def of(cls, t: TokenInfo) -> TokenOut:
        return cls(
            id=t.id,
            principal=t.principal,
            scope=t.scope,
            kind=t.kind,
            description=t.description,
            last_chars=t.last_chars,
            created=t.created,
            expires=t.expires,
            revoked=t.revoked,
            last_used=t.last_used,
        )


class NewTokenOut(TokenOut):
    token: str = Field(description="the secret: shown once, stored only as a hash")


class OAuthTokenOut(BaseModel):
    access_token: str
    token_type: str
    expires_in: int
    scope: str


class GrantIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    principal: str = Field(min_length=1, max_length=64)
    pattern: str = Field(min_length=1, max_length=100)
    role: str


class GrantOut(BaseModel):
    principal: str
    pattern: str
    role: str
    created: datetime

    @classmethod
    def of(cls, g: GrantInfo) -> GrantOut:
        return cls(principal=g.principal, pattern=g.pattern, role=g.role, created=g.created)


class AuditOut(BaseModel):
    id: int
    at: datetime
    principal: str
    action: str
    outcome: str
    model: str | None
    version: str | None
    source: str
    detail: str

    @classmethod
    def of(cls, e: AuditEntry) -> AuditOut:
        return cls(**e.to_json())


class VerifyOut(BaseModel):
    ok: bool
    checked_versions: int
    checked_chunks: int
    checked_bytes: int
    problems: list[str]
    affected_versions: dict[str, list[str]]


class GcStatusOut(BaseModel):
    models: int
    versions: int
    packs: int
    pack_bytes: int
    chunks: int
    condemned_packs: int
    condemned_bytes: int
    grace_seconds: float


class GcOut(BaseModel):
    packs_deleted: int
    bytes_freed: int
    packs_repacked: int
    bytes_rewritten: int
    manifests_deleted: int
    recipes_deleted: int
    temp_files_deleted: int
    secondary_objects_deleted: int
    dry_run: bool
    problems: list[str]
    new_packs: int


class Health(BaseModel):
    status: str
    checks: dict[str, str] = Field(default_factory=dict)
