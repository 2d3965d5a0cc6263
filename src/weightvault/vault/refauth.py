"""Authenticated refs of encrypted models: a MAC a bucket writer cannot make.

A version or alias ref of a model with a keyring carries ``"mac"``: hex BLAKE3 keyed with the
domain's ref MAC key (derived from its id key, which the bucket holds only KEK-wrapped) over
the canonical JSON of the ref's other fields plus its kind. The fields name the model, the label
(and alias) and the commit, so an edited commit, a ref copied to another label, alias or model,
or a plain ref slipped into an encrypted model is refused. The commit id in turn names exactly one
manifest (a keyed hash of it in an encrypted version), which must name the same model.

A ref that carries a MAC while its model has no keyring tells a machine that never pinned the
model that its keyring was deleted: that is an error too, never a plain model.
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


def _mac(dom: Domain, kind: str, body: Mapping[str, Any]) -> str:
    fields = {k: v for k, v in body.items() if k != "mac"}
    return blake3.blake3(canonical_json({"kind": kind, **fields}), key=dom.ref_mac_key).hexdigest()


def sign(dom: Domain, kind: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """``body`` with its MAC under ``dom``."""
    return {**body, "mac": _mac(dom, kind, body)}


def check(dom: Domain | None, model: str, kind: str, name: str, body: Mapping[str, Any]) -> None:
    """Refuse a ref of ``model`` (stored as ``kind`` ``name``) that is not authentic.

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
        return
    if not isinstance(mac, str):
        raise RefAuthError(f"{kind} ref {model}@{name} of encrypted model {model} is not authenticated")
    if not hmac.compare_digest(mac, _mac(dom, kind, body)):
        raise RefAuthError(f"{kind} ref {model}@{name} fails its MAC (edited or forged)")


__all__ = ["RefAuthError", "check", "sign"]
