"""REST v1: the operator's commands over the API, so a server user can do what an embedded one can:
replication status and sync, repair from replicas, recover the index from the store, key status.

Every route is for global administrators only and is written to the audit log (runs and status
reads alike: they reveal how the store is laid out). Key status never carries a secret: provider
settings that hold one (a passphrase, a password, a secret key) are dropped, the names of the
variables or files that hold them stay.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from weightvault.core.errors import InvalidInputError
from weightvault.core.names import check_label, check_model_name
from weightvault.core.revision import Ref
from weightvault.server.api_models import CallerDep, VaultDep

router = APIRouter(prefix="/ops", tags=["operations"])

#: provider settings whose value is a secret (``passphrase_env``, ``key_file`` are names, kept)
_SECRET = re.compile(
    r"^(passphrase|password|secret|secret_key|secret_access_key|token|key|kek|material)$", re.I
)


class ReplicasOut(BaseModel):
    #: replica names, the primary first; one name when the vault has no secondaries
    replicas: list[str]
    model: str | None = None
    version: str | None = None
    #: per replica: the version is complete there (true), lacks objects (false), or why unreachable
    complete: dict[str, bool | str] = {}


class SyncOut(BaseModel):
    ok: bool
    copied: dict[str, int]
    bytes_copied: dict[str, int]
    errors: dict[str, list[str]]


class RepairOut(BaseModel):
    ok: bool
    checked: int
    repaired: list[str]
    unrecoverable: list[str]


class RecoverOut(BaseModel):
    ok: bool
    counts: dict[str, int]
    problems: list[str]


class KeysOut(BaseModel):
    encryption_enabled: bool
    configured_provider: dict[str, Any]
    models: list[dict[str, Any]]


def _public(value: Any) -> Any:
    """``value`` without any setting that holds a secret, at any depth."""
    if isinstance(value, dict):
        return {k: _public(v) for k, v in value.items() if not _SECRET.match(str(k))}
    if isinstance(value, list):
        return [_public(v) for v in value]
    return value


@router.get("/replicas", response_model=ReplicasOut, summary="Replicas, and where a version is complete")
def replicas(
    vault: VaultDep,
    who: CallerDep,
    model: Annotated[str | None, Query(max_length=96)] = None,
    rev: Annotated[str | None, Query(max_length=128)] = None,
) -> ReplicasOut:
    who.require_admin("replicas.status")
    names = list(vault.replicas.names) if vault.replicas is not None else [vault.settings.storage_type]
    if model is None:
        if rev is not None:
            raise InvalidInputError("rev needs model")
        who.audit("replicas.status")
        return ReplicasOut(replicas=names)
    check_model_name(model)
    if rev is not None:
        check_label(rev, "revision")
    info = vault.resolve(Ref(model, rev))
    complete = vault.replica_status(Ref(model, info.label))
    who.audit("replicas.status", model=model, version=info.label)
    return ReplicasOut(replicas=names, model=model, version=info.label, complete=complete)


@router.post("/sync", response_model=SyncOut, summary="Copy to every secondary what it lacks")
def sync(vault: VaultDep, who: CallerDep) -> SyncOut:
    who.require_admin("sync")
    report = vault.sync()
    copied = sum(report.copied.values())
    who.audit("sync", detail=f"{copied} objects copied, {sum(len(e) for e in report.errors.values())} errors")
    return SyncOut(**report.to_json())  # type: ignore[arg-type]


@router.post("/repair", response_model=RepairOut, summary="Rewrite bad or missing replica copies")
def repair(vault: VaultDep, who: CallerDep) -> RepairOut:
    who.require_admin("repair")
    report = vault.repair()
    who.audit("repair", detail=f"{len(report.repaired)} repaired, {len(report.unrecoverable)} unrecoverable")
    return RepairOut(**report.to_json())  # type: ignore[arg-type]


@router.post("/recover", response_model=RecoverOut, summary="Rebuild the index from the store")
def recover(vault: VaultDep, who: CallerDep) -> RecoverOut:
    who.require_admin("recover")
    report = vault.recover()
    who.audit("recover", detail=", ".join(f"{v} {k}" for k, v in report.counts.items()))
    return RecoverOut(ok=report.ok, counts=report.counts, problems=report.problems)


@router.get("/keys", response_model=KeysOut, summary="Which key protects what (no secrets)")
def keys(
    vault: VaultDep, who: CallerDep, model: Annotated[str | None, Query(max_length=96)] = None
) -> KeysOut:
    who.require_admin("keys.status")
    data = vault.key_status(model)
    who.audit("keys.status", model=model)
    return KeysOut(**_public(data))
