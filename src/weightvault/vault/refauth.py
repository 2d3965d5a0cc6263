"""Authenticated refs of encrypted models: a MAC a bucket writer cannot make.

A version or alias ref of a model with a keyring carries ``"mac"``: hex BLAKE3 keyed with the
domain's ref MAC key (derived from its id key, which the bucket holds only KEK-wrapped) over
the canonical JSON of the ref's other fields plus its kind. The fields name the model, the label
(and alias) and the commit, so an edited commit, a ref copied to another label, alias or model,
or a plain ref slipped into an encrypted model is refused. The commit id in turn names exactly one
manifest (a keyed hash of it in an encrypted version), which must name the same model.

A ref that carries a MAC while its model has no keyring tells a machine that never pinned the
model that its keyring was deleted: that is an error too, never a plain model.

While ``keys rotate MODEL --new-domain`` moves a model to a new domain, each ref carries the
ref of the new domain beside its own: ``"next": {"id_key", "commit", "mac"}``, the new commit
id and the MAC under the new domain's key of the same fields with that commit. The old MAC
covers ``next`` too. Readers of the old domain read the old commit; once the keyring is
switched, readers of the new one read ``next`` (verified under the new key), until the rotation
rewrites the ref as a plain ref of the new domain. A ref MACed only under the old key is refused
by the new domain.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Any

import blake3

from weightvault.core.manifest import canonical_json
from weightvault.vault.keyring import Domain
from weightvault.vault.store import RefRefusedError

#: which field of a ref's body holds its name, by kind
_NAME_FIELD = {"version": "label", "alias": "alias"}


class RefAuthError(RefRefusedError):
    """A ref of an encrypted model is missing its MAC, fails it, or contradicts its key."""


class AliasRollbackError(RefRefusedError):
    """An authentic alias ref older than one this home has seen: the bucket put an old one back."""

    code = "alias_rollback"

    def __init__(self, message: str, model: str, alias: str) -> None:
        super().__init__(message)
        self.model = model
        self.alias = alias


def _mac(dom: Domain, kind: str, body: Mapping[str, Any]) -> str:
    fields = {k: v for k, v in body.items() if k != "mac"}
    return blake3.blake3(canonical_json({"kind": kind, **fields}), key=dom.ref_mac_key).hexdigest()


def sign(dom: Domain, kind: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """``body`` with its MAC under ``dom``."""
    return {**body, "mac": _mac(dom, kind, body)}


def own_fields(body: Mapping[str, Any]) -> dict[str, Any]:
    """A ref's fields without its MAC and transition section."""
    return {k: v for k, v in body.items() if k not in ("mac", "next")}


def in_next(body: Mapping[str, Any], new: Domain) -> dict[str, Any] | None:
    """The ref of the new domain ``new`` that ``body`` carries, as a plain ref of it (not yet
    verified), or None."""
    nxt = body.get("next")
    if not isinstance(nxt, dict) or nxt.get("id_key") != new.id_key_id:
        return None
    commit, mac = nxt.get("commit"), nxt.get("mac")
    if not isinstance(commit, str) or not isinstance(mac, str):
        return None
    return {**own_fields(body), "commit": commit, "mac": mac}


def sign_transition(
    old: Domain, new: Domain, kind: str, body: Mapping[str, Any], commit: str
) -> dict[str, Any]:
    """``body`` (a ref of ``old``) carrying its ref in ``new`` at ``commit``, MACed under both."""
    fields = own_fields(body)
    moved = sign(new, kind, {**fields, "commit": commit})
    nxt = {"id_key": new.id_key_id, "commit": commit, "mac": moved["mac"]}
    return sign(old, kind, {**fields, "next": nxt})


def check(
    dom: Domain | None, model: str, kind: str, name: str, body: Mapping[str, Any]
) -> dict[str, Any] | None:
    """Refuse a ref of ``model`` (stored as ``kind`` ``name``) that is not authentic; returns
    the ref as the reader must take it when that is not ``body`` itself (a ref carrying its
    successor in ``dom``, the model's domain after a ``--new-domain`` switch).

    ``dom`` is the model's opened domain, or None for a model without a keyring."""
    if kind not in _NAME_FIELD:
        raise RefAuthError(f"unknown ref kind {kind!r}")
    if body.get("model") != model or body.get(_NAME_FIELD[kind]) != name:
        raise RefAuthError(f"{kind} ref {model}@{name} names another model or {_NAME_FIELD[kind]}")
    mac = body.get("mac")
    if dom is None:
        if mac is not None:
            raise RefAuthError(
                f"{kind} ref {model}@{name} is authenticated but {model} has no keyring: the model is "
                "encrypted and its keyring was deleted from the store"
            )
        return None
    moved = in_next(body, dom)
    if moved is not None:
        if not hmac.compare_digest(moved["mac"], _mac(dom, kind, moved)):
            raise RefAuthError(f"{kind} ref {model}@{name} fails its MAC (edited or forged)")
        return moved
    if not isinstance(mac, str):
        raise RefAuthError(f"{kind} ref {model}@{name} of encrypted model {model} is not authenticated")
    if not hmac.compare_digest(mac, _mac(dom, kind, body)):
        raise RefAuthError(f"{kind} ref {model}@{name} fails its MAC (edited or forged)")
    return None


__all__ = ["AliasRollbackError", "RefAuthError", "check", "in_next", "own_fields", "sign", "sign_transition"]
