"""Local folders in the Hub's shapes: the Hub cache (``models--org--name``) and ``save_pretrained``.

The Hub cache keeps one folder per repo::

    models--org--name/
        refs/main                      the 40-hex commit the branch ``main`` pointed at
        snapshots/<40-hex>/config.json  a symlink into ../../blobs/<etag>
        blobs/<etag>

A folder written by ``save_pretrained`` has the files themselves; ``config.json`` names the repo
it was loaded from in ``_name_or_path``, and ``snapshot_download(local_dir=...)`` leaves the
commit of every file in ``.cache/huggingface/download/<path>.metadata`` (first line).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from weightvault.core.errors import InvalidInputError, InvalidNameError, SourceNotFoundError
from weightvault.core.names import check_model_name

COMMIT = re.compile(r"^[0-9a-f]{40}$")
REPO_PREFIX = "models--"
#: what ``snapshot_download(local_dir=...)`` writes beside the files; not part of the model
LOCAL_DIR_CACHE = ".cache"


@dataclass(frozen=True, slots=True)
class LocalRepo:
    """A folder to import and what is known of where it came from."""

    #: the folder whose files become the version
    root: Path
    #: symlinks may resolve anywhere inside this folder (a cache repo's folder, for its blobs)
    links_within: Path
    #: the Hub repo id (``org/name``), when known
    repo: str | None
    #: the resolved 40-hex commit, when known
    commit: str | None
    #: the branch or tag asked for (``main``), when one was
    revision: str | None
    #: ``hub-cache`` or ``folder``
    source: str
    #: top-level names under ``root`` that are bookkeeping, not model files
    skip: tuple[str, ...] = ()


def _repo_id(cache_dir_name: str) -> str:
    """``models--org--name`` -> ``org/name``."""
    if not cache_dir_name.startswith(REPO_PREFIX):
        raise InvalidInputError(f"{cache_dir_name} is not a model folder of the Hub cache (models--…)")
    repo = cache_dir_name[len(REPO_PREFIX) :].replace("--", "/")
    try:
        return check_model_name(repo)
    except InvalidNameError:
        raise InvalidInputError(f"{cache_dir_name} does not name a Hub model repo") from None


def _cache_repo(repo_dir: Path, revision: str | None) -> LocalRepo:
    wanted = revision or "main"
    snapshots = repo_dir / "snapshots"
    ref = repo_dir / "refs" / wanted
    if COMMIT.match(wanted) and (snapshots / wanted).is_dir():
        commit, branch = wanted, None
    elif ref.is_file() and ".." not in Path(wanted).parts:
        commit, branch = ref.read_text().strip(), wanted
        if not COMMIT.match(commit):
            raise InvalidInputError(f"{ref} does not hold a 40-hex commit")
    else:
        raise SourceNotFoundError(f"{repo_dir} has no revision {wanted!r} (no refs/{wanted}, no snapshot)")
    snapshot = snapshots / commit
    if not snapshot.is_dir():
        raise SourceNotFoundError(f"{repo_dir} has no snapshot of {commit} (refs/{wanted} points at it)")
    return LocalRepo(snapshot, repo_dir, _repo_id(repo_dir.name), commit, branch, "hub-cache")


def _saved_commit(root: Path) -> str | None:
    """The commit ``snapshot_download(local_dir=...)`` recorded for the files, if every record agrees."""
    meta = root / LOCAL_DIR_CACHE / "huggingface" / "download"
    commits = set()
    for path in meta.rglob("*.metadata") if meta.is_dir() else ():
        first = path.read_text(errors="replace").split("\n", 1)[0].strip()
        if COMMIT.match(first):
            commits.add(first)
    return commits.pop() if len(commits) == 1 else None


def _saved_repo(root: Path) -> str | None:
    """The Hub id in ``config.json``'s ``_name_or_path`` (a local path there is not one)."""
    try:
        raw = json.loads((root / "config.json").read_text())
    except (OSError, ValueError):
        return None
    name = raw.get("_name_or_path") if isinstance(raw, dict) else None
    if not isinstance(name, str) or name.startswith((".", "/", "~")) or Path(name).exists():
        return None
    try:
        return check_model_name(name)
    except InvalidNameError:
        return None


def open_local(path: Path | str, revision: str | None = None) -> LocalRepo:
    """What to import from ``path``: a Hub cache repo folder (at ``revision``, default ``main``),
    one of its snapshots, or a ``save_pretrained`` folder."""
    root = Path(path).expanduser().absolute()
    if not root.is_dir():
        raise SourceNotFoundError(f"{root} is not a folder")
    if (root / "snapshots").is_dir() and root.name.startswith(REPO_PREFIX):
        return _cache_repo(root, revision)
    if root.parent.name == "snapshots" and root.parent.parent.name.startswith(REPO_PREFIX):
        if revision is not None and revision != root.name:
            raise InvalidInputError(f"{root} is the snapshot of {root.name}, not of {revision}")
        if not COMMIT.match(root.name):
            raise InvalidInputError(f"{root.name} is not a 40-hex commit")
        repo_dir = root.parent.parent
        return LocalRepo(root, repo_dir, _repo_id(repo_dir.name), root.name, None, "hub-cache")
    if revision is not None:
        raise InvalidInputError("--revision applies to a Hub cache folder (models--org--name) only")
    skip = (LOCAL_DIR_CACHE,) if (root / LOCAL_DIR_CACHE / "huggingface").is_dir() else ()
    return LocalRepo(root, root, _saved_repo(root), _saved_commit(root), None, "folder", skip)
