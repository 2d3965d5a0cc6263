"""Where a version came from and what builds on it: base models, adapters, upstream repos.

Edges live in each manifest's ``lineage`` (so they are in the store, part of the commit id, and
survive ``recover``); the reverse direction is found by reading the manifests of the versions in
the index. Edge shapes (docs/format.md, "Lineage"):

* ``{"kind": "base_model", "model", "label", "commit", "via"}``: built on a version in this vault
  (``via`` is ``manual`` for ``push --base`` or ``adapter_config`` for a PEFT adapter);
* ``{"kind": "base_model", "repo", "revision", "via"}``: built on a Hub repo not in the vault;
* ``{"kind": "upstream", "repo", "commit", "revision", "source"}``: imported from a Hub repo at
  a resolved 40-hex commit (``hub.importer``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from weightvault.core.errors import (
    DestinationConflictError,
    InvalidInputError,
    MalformedFileError,
    ModelNotFoundError,
    NotFoundError,
)
from weightvault.core.names import check_model_name
from weightvault.core.revision import Ref, parse_ref
from weightvault.core.types import PullResult, VersionInfo
from weightvault.vault.source import SourceFile

if TYPE_CHECKING:
    from weightvault.vault.records import Records

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
#: an adapter config is a few hundred bytes; anything this big is not one
_MAX_CONFIG = 1 << 20
_MAX_DEPTH = 32


def version_edge(info: VersionInfo, via: str) -> dict[str, Any]:
    return {"kind": "base_model", "model": info.model, "label": info.label, "commit": info.commit, "via": via}


def adapter_base(files: Sequence[SourceFile]) -> tuple[str, str | None] | None:
    """(``base_model_name_or_path``, ``revision``) of a PEFT adapter folder; None if it is not one."""
    by_path = {f.path: f for f in files}
    cfg = by_path.get(ADAPTER_CONFIG)
    if cfg is None or not any(w in by_path for w in ADAPTER_WEIGHTS):
        return None
    if cfg.size > _MAX_CONFIG:
        raise MalformedFileError(f"{ADAPTER_CONFIG} is {cfg.size} bytes: too big for an adapter config")
    try:
        raw = json.loads(cfg.abspath.read_bytes())
    except (OSError, ValueError) as exc:
        raise MalformedFileError(f"{ADAPTER_CONFIG} is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise MalformedFileError(f"{ADAPTER_CONFIG} is not a JSON object")
    name, revision = raw.get("base_model_name_or_path"), raw.get("revision")
    if not isinstance(name, str) or not name:
        return None
    return name, revision if isinstance(revision, str) and revision else None


def _versions(vault: Records) -> list[VersionInfo]:
    return [v for m in vault.index.list_model_names() for v in vault.list_versions(m)]


def _edges(vault: Records, info: VersionInfo) -> tuple[dict[str, Any], ...]:
    return tuple(dict(x) for x in vault._manifest(info.commit).lineage)


def _upstream(edges: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    return next((e for e in edges if e.get("kind") == "upstream"), None)


def resolve_hub_base(vault: Records, repo: str, revision: str | None) -> dict[str, Any]:
    """The edge to the base an adapter names: a vault version if one matches, else the Hub id.

    Tried in order: a model of that name (at ``revision`` when it names a label, alias or
    commit of it), then the newest version imported from that repo (at that upstream commit
    when ``revision`` is one)."""
    try:
        check_model_name(repo)
        has_model = repo in vault.index.list_model_names()
    except InvalidInputError:
        has_model = False
    if has_model:
        try:
            return version_edge(vault.resolve(Ref(repo, revision)), "adapter_config")
        except (NotFoundError, InvalidInputError):
            pass
    for info in _versions(vault):  # newest first within each model
        up = _upstream(_edges(vault, info))
        if (
            up is not None
            and up.get("repo") == repo
            and revision in (None, up.get("commit"), up.get("revision"))
        ):
            return version_edge(info, "adapter_config")
    return {"kind": "base_model", "repo": repo, "revision": revision, "via": "adapter_config"}


def base_edges(vault: Records, files: Sequence[SourceFile], base: str | None) -> list[dict[str, Any]]:
    """The base-model edge of a push: ``--base`` given by hand, else a PEFT adapter's config."""
    if base is not None:
        return [version_edge(vault.resolve(base), "manual")]
    found = adapter_base(files)
    if found is None:
        return []
    return [resolve_hub_base(vault, *found)]


# ---- the graph ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LineageReport:
    version: VersionInfo
    #: what it came from, nearest first, each with its ``depth``
    ancestors: tuple[dict[str, Any], ...]
    #: what builds on it, nearest first, each with its ``depth``
    descendants: tuple[dict[str, Any], ...]

    def to_json(self) -> dict[str, Any]:
        v = self.version
        return {
            "model": v.model,
            "label": v.label,
            "commit": v.commit,
            "ancestors": list(self.ancestors),
            "descendants": list(self.descendants),
        }


def _builds_on(edge: dict[str, Any], target: VersionInfo, target_edges: Sequence[dict[str, Any]]) -> bool:
    if edge.get("kind") != "base_model":
        return False
    if "commit" in edge:
        return bool(edge["commit"] == target.commit and edge.get("model") == target.model)
    repo, rev = edge.get("repo"), edge.get("revision")
    if repo == target.model and rev in (None, target.label, target.commit):
        return True
    up = _upstream(target_edges)
    return up is not None and repo == up.get("repo") and rev in (None, up.get("commit"), up.get("revision"))


def lineage(vault: Records, ref: str | Ref) -> LineageReport:
    info = vault.resolve(ref)
    everything = [(v, _edges(vault, v)) for v in _versions(vault)]
    by_commit = {(v.model, v.commit): v for v, _ in everything}
    edges_of = {(v.model, v.commit): e for v, e in everything}

    ancestors: list[dict[str, Any]] = []
    seen = {(info.model, info.commit)}
    frontier = [info]
    for depth in range(1, _MAX_DEPTH + 1):
        nxt: list[VersionInfo] = []
        for v in frontier:
            for edge in edges_of.get((v.model, v.commit), ()):
                row = {"depth": depth, "of": f"{v.model}@{v.label}", **edge}
                key = (edge.get("model"), edge.get("commit"))
                parent = by_commit.get(key) if "commit" in edge else None  # type: ignore[arg-type]
                if "commit" in edge:
                    row["present"] = parent is not None
                    if parent is not None:
                        row["label"] = parent.label
                ancestors.append(row)
                if parent is not None and key not in seen:
                    seen.add(key)  # type: ignore[arg-type]
                    nxt.append(parent)
        if not nxt:
            break
        frontier = nxt

    descendants: list[dict[str, Any]] = []
    seen = {(info.model, info.commit)}
    frontier = [info]
    for depth in range(1, _MAX_DEPTH + 1):
        nxt = []
        for target in frontier:
            target_edges = edges_of.get((target.model, target.commit), ())
            for v, edges in everything:
                for edge in edges:
                    if (v.model, v.commit) not in seen and _builds_on(edge, target, target_edges):
                        seen.add((v.model, v.commit))
                        descendants.append(
                            {
                                "depth": depth,
                                "model": v.model,
                                "label": v.label,
                                "commit": v.commit,
                                "of": f"{target.model}@{target.label}",
                                "via": edge.get("via"),
                            }
                        )
                        nxt.append(v)
        if not nxt:
            break
        frontier = nxt
    return LineageReport(info, tuple(ancestors), tuple(descendants))


# ---- pulling an adapter with its base ----------------------------------------------------------


def base_of(vault: Records, ref: str | Ref) -> VersionInfo:
    """The vault version ``ref`` builds on (its first ``base_model`` edge), or a clear error."""
    info = vault.show(ref)
    edges = [e for e in info.lineage if e.get("kind") == "base_model"]
    if not edges:
        raise InvalidInputError(f"{info.model}@{info.label} has no base model in its lineage")
    edge = edges[0]
    if "commit" not in edge:
        raise ModelNotFoundError(
            f"the base of {info.model}@{info.label}, {edge.get('repo')}"
            f"{'@' + edge['revision'] if edge.get('revision') else ''}, is not in this vault; import it first"
        )
    return vault.resolve(Ref(str(edge["model"]), str(edge["commit"])))


def pull_with_base(
    vault: Records, ref: str | Ref, dest: Path | str, base_dest: Path | str | None = None, **options: Any
) -> tuple[tuple[PullResult, Path], tuple[PullResult, Path]]:
    """Pull ``ref`` into ``dest`` and its base model into ``base_dest`` (default ``dest/base``);
    returns each pull with its destination.

    Both versions are resolved, and the layout checked, before a byte is written."""
    r = parse_ref(ref) if isinstance(ref, str) else ref
    info = vault.show(r)
    base = base_of(vault, Ref(info.model, info.commit))
    dest_path = Path(dest)
    base_path = Path(base_dest) if base_dest is not None else dest_path / "base"
    if base_dest is None and any(f.path == "base" or f.path.startswith("base/") for f in info.files):
        raise DestinationConflictError(
            f"{info.model}@{info.label} has its own files under base/; "
            "give the base another destination (--base-dest)"
        )
    if base_path.absolute() == dest_path.absolute():
        raise DestinationConflictError("the base and the adapter need different destinations")
    adapter = vault.pull(Ref(info.model, info.commit), dest_path, **options)
    pulled_base = vault.pull(Ref(base.model, base.commit), base_path, **options)
    return (adapter, dest_path), (pulled_base, base_path)
