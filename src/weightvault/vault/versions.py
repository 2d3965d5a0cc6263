"""Making a version visible: its ref (a free label when none is given), the check that a push
changes nothing, and its copy to the replicas."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from weightvault.core.errors import (
    WeightvaultError,
)
from weightvault.core.manifest import FileEntry
from weightvault.core.types import VersionInfo
from weightvault.registry.index import VersionRecord
from weightvault.vault import replication as replication_module
from weightvault.vault.newref import create_version_ref, taken_back_on_failure
from weightvault.vault.records import Records
from weightvault.vault.store import RefSigner


class Versions(Records):
    """A vault that creates version refs and replicates new versions."""

    def _same_files(
        self, model: str, commit: str, entries: Sequence[FileEntry], lineage: Sequence[Mapping[str, Any]]
    ) -> VersionInfo | None:
        """The latest version of ``model`` when it is ``commit`` and holds exactly ``entries`` with
        the same ``lineage`` (new lineage, another base or upstream commit, is a new version)."""
        try:
            latest = self.index.resolve(model, None)
        except WeightvaultError:
            return None
        if latest.commit != commit:
            return None
        manifest = self._manifest(latest.commit)
        theirs = {(f.path, f.size, f.sha256) for f in manifest.files}
        if theirs != {(f.path, f.size, f.sha256) for f in entries}:
            return None
        if [dict(x) for x in manifest.lineage] != [dict(x) for x in lineage]:
            return None
        return self._info(latest)

    def _replicate_version(self, rec: VersionRecord) -> dict[str, str]:
        if self.replicas is None or not self.settings.sync_enabled:
            return {}
        keys = self.version_keys(rec)
        if self.settings.replication == "inline":
            return replication_module.replicate(self, self.replicas, keys)
        replicas = self.replicas
        thread = threading.Thread(
            target=replication_module.replicate, args=(self, replicas, keys), name="wv-replicate", daemon=True
        )
        thread.start()
        self._background.append(thread)
        return {n: "background" for n in replicas.names if n != replicas.primary_name}

    def _create_ref(
        self, model: str, version: str | None, commit: str, created: datetime, signer: RefSigner | None
    ) -> str:
        """The moment a version becomes visible in the store (its own method: a test stops a push here)."""
        return create_version_ref(
            self.store, self.index.label_exists, model, version, commit, created, signer
        )

    def _commit_version(
        self,
        model: str,
        version: str | None,
        commit: str,
        *,
        signer: RefSigner | None,
        parent: str | None,
        message: str,
        metadata: Mapping[str, str] | None,
        total_size: int,
        file_count: int,
        manifest: bytes,
        required_packs: Iterable[str],
        required_recipes: Iterable[str],
    ) -> VersionRecord:
        """Make a staged version visible: its ref in the store first (the truth), then its index row.
        When the index refuses it, the ref is taken back so no version is left half visible."""
        created = datetime.now(UTC)
        label = self._create_ref(model, version, commit, created, signer)
        self.journal_ref(model, "version", label)
        with taken_back_on_failure(self.primary.delete, self.journal_ref, model, label):
            return self.index.add_version(
                model=model,
                label=label,
                commit=commit,
                parent=parent,
                created=created,
                message=message,
                metadata=dict(metadata or {}),
                total_size=total_size,
                file_count=file_count,
                manifest=manifest,
                required_packs=required_packs,
                required_recipes=required_recipes,
            )
