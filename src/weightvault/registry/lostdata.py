"""The errors of a push whose packs or recipes disappeared before its version was made.

Both indexes (``RegistryIndex`` and the standard library's ``LightIndex``) check a new version's
packs and recipes, and both pushes (``Vault.push`` and ``vault.lightpush``) retry the packs the
store lost; each side raises the same error from here, so either path reports it in one wording.
Imports nothing but ``core.errors`` (the light push must not load SQLAlchemy or pydantic).
"""

from __future__ import annotations

from weightvault.core.errors import ConcurrentModificationError

#: how many times a push writes again the chunks of packs the store lost before it gives up
PACK_ATTEMPTS = 3


def packs_collected(missing: int) -> ConcurrentModificationError:
    """``missing`` of the version's packs were garbage-collected while it was pushed."""
    return ConcurrentModificationError(
        f"{missing} pack(s) this version needs were garbage-collected during the "
        "push; push again (only the missing data is written)"
    )


def recipes_collected() -> ConcurrentModificationError:
    """Some of the version's file recipes were garbage-collected while it was pushed."""
    return ConcurrentModificationError(
        "file recipes this version needs were garbage-collected during the push; push again"
    )


def packs_keep_disappearing(first: str) -> ConcurrentModificationError:
    """The store lost packs the version needs on every attempt (``first`` is one of them)."""
    return ConcurrentModificationError(
        f"packs this version needs keep disappearing from the store ({first}, …)"
    )
