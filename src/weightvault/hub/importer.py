"""``weightvault import dir``: a local Hub cache repo or ``save_pretrained`` folder as a version.

The version's lineage records where it came from (``{"kind": "upstream", "repo", "commit",
"revision", "source"}``), so importing the same commit again finds the version already there
and writes nothing; a branch that moved upstream imports as a new version whose lineage shows
the new commit. Files the vault already holds are not stored again (chunk dedup).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from weightvault.core.errors import InvalidInputError, InvalidNameError
from weightvault.core.names import check_model_name
from weightvault.core.types import VersionInfo
from weightvault.hub.folder import LocalRepo, open_local
from weightvault.vault import filescan
from weightvault.vault.source import SourceFile, scan_source
from weightvault.vault.vault import Vault


@dataclass(frozen=True, slots=True)
class ImportResult:
    version: VersionInfo
    #: False when the vault already had this import (nothing was written)
    imported: bool
    upstream: dict[str, Any] | None

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version.to_json(), "imported": self.imported, "upstream": self.upstream}


def upstream_edge(local: LocalRepo) -> dict[str, Any] | None:
    if local.repo is None and local.commit is None:
        return None
    return {
        "kind": "upstream",
        "repo": local.repo,
        "commit": local.commit,
        "revision": local.revision,
        "source": local.source,
    }


def _model_name(local: LocalRepo, name: str | None) -> str:
    candidate = name or local.repo or local.root.name
    try:
        return check_model_name(candidate)
    except InvalidNameError:
        if name is not None:
            raise
        raise InvalidInputError(f"{candidate!r} is not a model name; give one with --as NAME") from None


def _same_tree(info: VersionInfo, files: list[SourceFile]) -> bool:
    """Whether ``files`` are exactly the version's files (sizes first, hashes only if they match)."""
    stored = {f.path: f for f in info.files}
    if sorted(stored) != sorted(f.path for f in files):
        return False
    if any(stored[f.path].size != f.size for f in files):
        return False
    return all(filescan.sha256_file(f.abspath, f.size) == stored[f.path].sha256 for f in files)


def find_existing(
    vault: Vault, model: str, edge: dict[str, Any] | None, files: list[SourceFile]
) -> VersionInfo | None:
    """The version of ``model`` this import already made, if any."""
    if model not in vault.index.list_model_names():
        return None
    for v in vault.list_versions(model):  # newest first
        info = vault.show(f"{model}@{v.commit}")
        ups = [e for e in info.lineage if e.get("kind") == "upstream"]
        if edge is not None and edge.get("commit") is not None:
            if any(e.get("repo") == edge["repo"] and e.get("commit") == edge["commit"] for e in ups):
                return info
            continue
        # nothing pins the content: the same files under the same origin are the same import
        if ups == ([edge] if edge else []) and _same_tree(info, files):
            return info
        break  # only the latest version counts: re-importing older content makes a new version
    return None


def import_dir(
    vault: Vault,
    path: Path | str,
    *,
    name: str | None = None,
    revision: str | None = None,
    version: str | None = None,
    refuse_unsafe: bool = False,
    progress: Callable[[int], None] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> ImportResult:
    local = open_local(path, revision)
    model = _model_name(local, name)
    scanned = scan_source(local.root, links_within=local.links_within)
    files = [f for f in scanned if f.path.split("/", 1)[0] not in local.skip]
    edge = upstream_edge(local)
    existing = find_existing(vault, model, edge, files)
    if existing is not None:
        return ImportResult(existing, False, edge)
    origin = f"{local.repo or local.root}" + (f"@{local.commit}" if local.commit else "")
    result = vault.push(
        model,
        files,
        version=version,
        message=f"import {origin}",
        lineage=[edge] if edge else [],
        refuse_unsafe=refuse_unsafe,
        progress=progress,
        on_start=on_start,
    )
    return ImportResult(result.version, not result.unchanged, edge)
