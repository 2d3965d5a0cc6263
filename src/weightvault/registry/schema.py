"""Tables of the registry index. The store holds the truth; these rows make it fast to query."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class ModelRow(Base):
    __tablename__ = "models"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(96), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class VersionRow(Base):
    __tablename__ = "versions"
    __table_args__ = (
        UniqueConstraint("model_id", "label", name="uq_versions_model_label"),
        Index("ix_versions_model_commit", "model_id", "commit_id"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    label: Mapped[str] = mapped_column(String(128))
    commit_id: Mapped[str] = mapped_column(String(40))
    parent: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    message: Mapped[str] = mapped_column(Text, default="")
    metadata_json: Mapped[str] = mapped_column(Text, default="{}")
    total_size: Mapped[int] = mapped_column(BigInteger)
    file_count: Mapped[int] = mapped_column(Integer)


class AliasRow(Base):
    __tablename__ = "aliases"
    __table_args__ = (UniqueConstraint("model_id", "name", name="uq_aliases_model_name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(128))
    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id", ondelete="CASCADE"))


class ManifestRow(Base):
    __tablename__ = "manifests"
    commit_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class RecipeRow(Base):
    __tablename__ = "recipes"
    #: the recipe's name in the store: the file's SHA-256, or its keyed hash in an encrypted model
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class PackRow(Base):
    __tablename__ = "packs"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    #: When gc first found the pack unreferenced; it is deleted once that is older than the grace period.
    condemned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class ChunkRow(Base):
    __tablename__ = "chunks"
    __table_args__ = (Index("ix_chunks_pack", "pack_id"),)
    id: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    #: a chunk may be stored in several packs (docs/format.md, "Refresh"): one row per copy
    pack_id: Mapped[str] = mapped_column(ForeignKey("packs.id", ondelete="CASCADE"), primary_key=True)
    offset: Mapped[int] = mapped_column(BigInteger)
    stored_len: Mapped[int] = mapped_column(Integer)
    raw_len: Mapped[int] = mapped_column(Integer)
    codec: Mapped[int] = mapped_column(Integer, default=0)
    key_slot: Mapped[int] = mapped_column(Integer, default=0)


class StateRow(Base):
    """Small named values about the index itself: the journal cursor, the store it mirrors."""

    __tablename__ = "store_state"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


# ---- access control (server): principals, tokens, grants, policies, audit --------------------


class PrincipalRow(Base):
    __tablename__ = "principals"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    #: a global administrator: every model, grants, tokens, audit, gc
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class TokenRow(Base):
    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    principal_id: Mapped[int] = mapped_column(ForeignKey("principals.id", ondelete="CASCADE"))
    #: SHA-256 of the token: tokens are 256 random bits, so a fast hash is enough and the table
    #: alone lets no one authenticate
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    last_chars: Mapped[str] = mapped_column(String(8))
    scope: Mapped[str] = mapped_column(String(8))
    #: "api" (created by a person) or "oauth" (short-lived, from the client-credentials endpoint)
    kind: Mapped[str] = mapped_column(String(8), default="api")
    description: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class GrantRow(Base):
    __tablename__ = "grants"
    __table_args__ = (UniqueConstraint("principal_id", "pattern", name="uq_grants_principal_pattern"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    principal_id: Mapped[int] = mapped_column(ForeignKey("principals.id", ondelete="CASCADE"))
    #: a model name, ``namespace/*`` or ``*``
    pattern: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ModelPolicyRow(Base):
    """Per-model access settings; keyed by name so a policy can precede the model's first push."""

    __tablename__ = "model_policies"
    model: Mapped[str] = mapped_column(String(96), primary_key=True)
    public_read: Mapped[bool] = mapped_column(Boolean, default=False)


class ProtectedAliasRow(Base):
    __tablename__ = "protected_aliases"
    model: Mapped[str] = mapped_column(String(96), primary_key=True)
    alias: Mapped[str] = mapped_column(String(128), primary_key=True)


class AuditRow(Base):
    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_model_at", "model", "at"), Index("ix_audit_at", "at"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    principal: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))
    model: Mapped[str | None] = mapped_column(String(96), nullable=True)
    version: Mapped[str | None] = mapped_column(String(128), nullable=True)
    source: Mapped[str] = mapped_column(String(64), default="")
    detail: Mapped[str] = mapped_column(Text, default="")


# ---- server: whole-file upload sessions ----------------------------------------------------------


class UploadSessionRow(Base):
    """An open whole-file upload (server): shared by every server process on this index, so a
    session opened on one continues on any other. Its bytes are not here: each process spools
    what it received on its own disk."""

    __tablename__ = "upload_sessions"
    __table_args__ = (Index("ix_upload_sessions_touched", "touched_at"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    model: Mapped[str] = mapped_column(String(96))
    path: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    principal: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    #: the last request that opened, sent to or asked about the session, on any process
    touched_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
