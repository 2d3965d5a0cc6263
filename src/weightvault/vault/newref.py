"""A new version's ref in the store: under the label given, or the first free timestamp label;
and taken back when the index then refuses the version.

``Versions`` (the full push) and ``vault.lightpush`` (the CLI's push without SQLAlchemy) both
create refs this way, so an unlabelled push gets the same label on either path. Light on
purpose: it imports nothing beyond ``core.errors`` and ``core.layout`` at run time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING

from weightvault.core import layout
from weightvault.core.errors import ObjectExistsError, VersionExistsError

if TYPE_CHECKING:
    from weightvault.vault.store import RefSigner, Store

#: how many ``-N`` suffixes of one second's timestamp label are tried before giving up
_TRIES = 1000


def timestamp_label(now: datetime) -> str:
    return now.strftime("%Y%m%d%H%M%S")


def create_version_ref(
    store: Store,
    label_exists: Callable[[str, str], bool],
    model: str,
    version: str | None,
    commit: str,
    created: datetime,
    signer: RefSigner | None,
) -> str:
    """Create the ref and return its label. Without ``version``, the label is the creation
    second, suffixed ``-N`` when the index (``label_exists``) or the store already has it; the
    store's refusal of an existing ref is what makes a label taken by a concurrent push lose."""
    if version is not None:
        try:
            store.create_version_ref(model, version, commit, created, signer)
        except ObjectExistsError:
            raise VersionExistsError(f"version {model}@{version} already exists in the store") from None
        return version
    base = timestamp_label(created)
    for n in range(_TRIES):
        label = base if n == 0 else f"{base}-{n}"
        if label_exists(model, label):
            continue
        try:
            store.create_version_ref(model, label, commit, created, signer)
            return label
        except ObjectExistsError:
            continue
    raise VersionExistsError(f"could not find a free timestamp label for {model} at {base}")


@contextmanager
def taken_back_on_failure(
    delete: Callable[[str], None], journal_ref: Callable[[str, str, str], object], model: str, label: str
) -> Iterator[None]:
    """Around the index row of a version whose ref was just created: when the row fails, the
    ref is deleted and journalled again, so no version is left visible in the store alone."""
    try:
        yield
    except BaseException:
        delete(layout.version_ref_key(model, label))
        journal_ref(model, "version", label)
        raise
