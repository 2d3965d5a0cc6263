"""Alias rollback detection: sequence numbers in the alias refs of encrypted models.

An alias ref of an encrypted model carries ``"seq"`` inside its MAC. A writer makes it at least
the time in microseconds and above both the alias's current number in the store and the highest
this home has seen; a reader pins the highest it has seen per alias (``vault.trust``) and refuses
an authentic alias ref with a lower number (or none): an old ref the bucket put back. The
refusal is remembered by the home until a newer ref of the alias appears or the user accepts the
store's ref on purpose (``weightvault alias accept``). See docs/security.md.
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any

from weightvault.core.errors import WeightvaultError
from weightvault.vault import refauth
from weightvault.vault import refresh as refresh_module

if TYPE_CHECKING:
    from weightvault.vault.state import VaultState


def check(vault: VaultState, model: str, alias: str, body: dict[str, Any]) -> None:
    """Refuse an authentic alias ref older than one this home has seen; raise the pin otherwise."""
    seq = body.get("seq")
    if seq is not None and (not isinstance(seq, int) or isinstance(seq, bool)):
        raise refauth.RefAuthError(f"alias ref {model}@{alias} has a malformed sequence number")
    trust = vault.keys.trust
    if trust is None:
        return
    message = (
        f"alias {model}@{alias} in the store (-> {body.get('label')}, sequence {seq}) is older than "
        "the one this home has seen (sequence {pinned}): it was rolled back in the store; if that "
        f"was deliberate, accept it with `weightvault alias accept {model} {alias}`"
    )
    pinned = trust.check_alias(model, alias, seq, message)
    if pinned is None:
        vault._rollbacks.pop((model, alias), None)
        return
    error = refauth.AliasRollbackError(message.replace("{pinned}", str(pinned)), model, alias)
    vault._rollbacks[(model, alias)] = error
    raise error


def rolled_back(vault: VaultState, model: str, alias: str) -> refauth.AliasRollbackError | None:
    """The refusal of ``alias`` as rolled back, from this process or remembered by the home."""
    error = vault._rollbacks.get((model, alias))
    trust = vault.keys.trust
    if error is None and trust is not None:
        remembered = trust.rolled_back(model, alias)
        if remembered is not None:
            pinned = trust.alias_seqs(model).get(alias)
            error = refauth.AliasRollbackError(remembered.replace("{pinned}", str(pinned)), model, alias)
    return error


def next_seq(vault: VaultState, model: str, alias: str) -> int:
    """The number of a new ref of ``alias``: above its current one in the store (read as stored:
    only to go above it), above the one this home pinned, and at least the time in microseconds
    (so an alias removed and set again from another machine still grows)."""
    seq = time.time_ns() // 1000
    with contextlib.suppress(WeightvaultError):
        raw = vault.store.get_raw_ref(model, "alias", alias)
        if raw is not None and isinstance(raw.get("seq"), int):
            seq = max(seq, raw["seq"] + 1)
    trust = vault.keys.trust
    if trust is not None:
        pinned = trust.alias_seqs(model).get(alias)
        if pinned is not None:
            seq = max(seq, pinned + 1)
    return seq


def pin_written(vault: VaultState, model: str, alias: str, seq: int) -> None:
    """This home wrote ``seq``: it is the newest it has seen."""
    if vault.keys.trust is not None:
        vault.keys.trust.check_alias(model, alias, seq)
    vault._rollbacks.pop((model, alias), None)


def accept(vault: VaultState, model: str, alias: str) -> str | None:
    """Forget the pin of ``alias`` and take the store's ref as it is; returns the label it now
    names in the index, or None when the store has no such alias."""
    if vault.keys.trust is not None:
        vault.keys.trust.forget_alias(model, alias)
    vault._rollbacks.pop((model, alias), None)
    report = refresh_module.RefreshReport()
    refresh_module.sync_ref(vault, vault.index, model, "alias", alias, report)
    if report.refused:
        raise next(iter(report.refused.values()))
    try:
        return vault.index.aliases(model).get(alias)
    except WeightvaultError:
        return None


__all__ = ["accept", "check", "next_seq", "pin_written", "rolled_back"]
