"""Following the store: the index kept in step with it (``refresh``) and every change announced
in the journal, so that other machines' indexes follow this one's."""

from __future__ import annotations

import logging
from typing import Any

from weightvault.core.errors import (
    CredentialsError,
    ModelNotFoundError,
    RevisionNotFoundError,
    StorageError,
)
from weightvault.registry.index import VersionRecord
from weightvault.vault import aliasseq
from weightvault.vault import refresh as refresh_module
from weightvault.vault.journal import PACK, REF
from weightvault.vault.state import VaultState

logger = logging.getLogger(__name__)


class Following(VaultState):
    """A vault state that follows its store and announces its own changes."""

    def follow_domain_move(self, model: str) -> bool:
        """When ``model`` was moved to a new domain and this index still names the old commits (the
        move stopped before announcing it): re-read the model's refs from the store. False when the
        model was never moved (nothing to follow)."""
        dom = self.keys.domain(model, refresh=True)
        if dom is None or not dom.record.replaces:
            return False
        report = refresh_module.RefreshReport()
        found, _bad = self.store.ref_keys()
        for m, kind, name in sorted(found, key=lambda r: r[1] != "version"):
            if m == model:
                refresh_module.sync_ref(self, self.index, m, kind, name, report)
        return True

    def refresh(self) -> refresh_module.RefreshReport:
        """Bring the index up to date with the store (other machines' pushes, aliases, deletes,
        gc). Costs one small read when nothing changed; every operation below calls it."""
        report = refresh_module.refresh(self)
        self._refused_refs.update(report.refused)
        return report

    def _lookup(self, model: str, revision: str | None) -> VersionRecord:
        """``index.resolve``; a model whose refs in the store were refused reports why, not
        "not found" (the store may have removed a ref it could not forge). An alias whose ref in
        the store was rolled back is an error, not the target this index knew before."""
        rolled_back = aliasseq.rolled_back(self, model, revision) if revision is not None else None
        if rolled_back is not None:
            raise rolled_back
        try:
            return self.index.resolve(model, revision)
        except (ModelNotFoundError, RevisionNotFoundError):
            refused = self._refused_refs.get(model)
            if refused is not None:
                raise refused from None
            raise

    def _refresh_to_read(self) -> None:
        """Refresh before a read; a primary that cannot be reached leaves the index as it is (the
        read goes on with what this machine knew, and replicas may still serve the data)."""
        try:
            self.refresh()
        except StorageError as exc:
            if isinstance(exc, CredentialsError):  # keys or credentials: the user must act
                raise
            logger.warning("could not follow the store's changes (%s); showing what this index knew", exc)

    def follow_own_changes(self) -> None:
        """Apply the journal entries this process just wrote (a few small reads), so the index is
        current again: the next read from this home then takes the light path (``fastopen``), which
        serves only an index that applied every entry, instead of loading the whole stack to
        refresh first. The change is committed already; a store that cannot be reached now only
        leaves the refresh to the next command."""
        try:
            self.refresh()
        except StorageError as exc:
            logger.info("the index will follow this change at the next command (%s)", exc)

    def _cursor(self) -> int:
        return int(self.index.get_state(refresh_module.CURSOR) or 0)

    def journal_change(self, kind: str, **fields: Any) -> int:
        return self.journal.append(kind, self._cursor(), **fields)

    def journal_pack(self, pack_id: str, size: int) -> None:
        self.journal_change(PACK, id=pack_id, size=size)

    def journal_ref(self, model: str, kind: str, name: str) -> None:
        self.journal_change(REF, model=model, ref=kind, name=name)
