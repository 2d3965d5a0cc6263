"""``weightvault import hf REPO_ID``: a Hub repo at a pinned commit, downloaded through
``huggingface_hub`` and stored as a version whose lineage records the repo and the 40-hex commit.

The revision asked for is resolved to its commit first, so importing the same commit again (with
the same file filters) finds the version already there and downloads nothing; a branch that moved
upstream imports as a new version. Files already in the vault are not stored again (chunk dedup).
The endpoint is checked before any request: its host must resolve only to public addresses unless
the operator allows private ones (setting ``import_allow_private_endpoints``), so an import cannot
be aimed at loopback, link-local (cloud metadata) or private-network services.
"""

from __future__ import annotations

import ipaddress
import socket
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from weightvault.core.errors import (
    AccessDeniedError,
    ConfigError,
    InvalidInputError,
    ModelNotFoundError,
    NotFoundError,
    RevisionNotFoundError,
    StorageError,
)
from weightvault.core.names import check_model_name
from weightvault.core.types import VersionInfo
from weightvault.hub.folder import COMMIT
from weightvault.hub.importer import ImportResult
from weightvault.vault.source import scan_source
from weightvault.vault.vault import Vault

DEFAULT_ENDPOINT = "https://huggingface.co"


def check_endpoint(url: str, allow_private: bool) -> str:
    """``url`` without a trailing slash, if it is http(s) and its host is one imports may reach."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInputError(f"{url!r} is not an http(s) URL")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise InvalidInputError("an endpoint URL carries no credentials, query or fragment")
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
    except OSError as exc:
        raise StorageError(f"cannot resolve {parts.hostname}: {exc}") from None
    if not allow_private:
        for info in infos:
            ip = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
            if not ip.is_global or ip.is_multicast:
                raise AccessDeniedError(
                    f"{parts.hostname} resolves to {ip}, a loopback, link-local or private address; "
                    "set import_allow_private_endpoints to import from there"
                )
    return url.rstrip("/")


def _edge(
    repo: str, commit: str, revision: str, endpoint: str, include: Sequence[str], exclude: Sequence[str]
) -> dict[str, Any]:
    edge: dict[str, Any] = {
        "kind": "upstream",
        "repo": repo,
        "commit": commit,
        "revision": revision,
        "source": "hub",
        "endpoint": endpoint,
    }
    if include:
        edge["include"] = list(include)
    if exclude:
        edge["exclude"] = list(exclude)
    return edge


def _same_import(a: dict[str, Any], b: dict[str, Any]) -> bool:
    keys = ("repo", "commit", "include", "exclude")
    return all(a.get(k) == b.get(k) for k in keys)


def _already(vault: Vault, model: str, edge: dict[str, Any]) -> VersionInfo | None:
    if model not in vault.model_names():
        return None
    for v in vault.list_versions(model):
        info = vault.show(f"{model}@{v.commit}")
        if any(e.get("kind") == "upstream" and _same_import(e, edge) for e in info.lineage):
            return info
    return None


def import_hf(
    vault: Vault,
    repo: str,
    *,
    revision: str | None = None,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    name: str | None = None,
    endpoint: str | None = None,
    token: str | None = None,
    version: str | None = None,
    refuse_unsafe: bool = False,
    progress: Callable[[int], None] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> ImportResult:
    check_model_name(repo)
    model = check_model_name(name or repo)
    allow_private = bool(vault.settings.import_allow_private_endpoints)
    base = check_endpoint(endpoint or DEFAULT_ENDPOINT, allow_private)
    rev = revision or "main"
    try:
        import huggingface_hub as hh
        from huggingface_hub import errors as hf_errors
    except ImportError:  # pragma: no cover - a dependency of the package
        raise ConfigError("import hf needs the huggingface_hub package") from None
    api = hh.HfApi(endpoint=base, token=token if token is not None else False)
    try:
        commit = api.model_info(repo, revision=rev).sha
        if commit is None or not COMMIT.match(commit):
            raise InvalidInputError(f"{base} did not resolve {repo}@{rev} to a 40-hex commit")
        edge = _edge(repo, commit, rev, base, include, exclude)
        existing = _already(vault, model, edge)
        if existing is not None:
            return ImportResult(existing, False, edge)
        scratch = vault.settings.home / "tmp"
        scratch.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="import-hf-", dir=scratch) as tmp:
            folder = Path(
                hh.snapshot_download(
                    repo,
                    revision=commit,
                    allow_patterns=list(include) or None,
                    ignore_patterns=list(exclude) or None,
                    cache_dir=tmp,
                    endpoint=base,
                    token=token if token is not None else False,
                )
            )
            if not any(p.is_file() for p in folder.rglob("*")):
                raise InvalidInputError(f"no file of {repo}@{commit[:12]} matches the filters")
            files = scan_source(folder, links_within=Path(tmp))  # snapshot files link to blobs/
            result = vault.push(
                model,
                files,
                version=version,
                message=f"import {repo}@{commit} from {base}",
                lineage=[edge],
                refuse_unsafe=refuse_unsafe,
                progress=progress,
                on_start=on_start,
            )
            return ImportResult(result.version, not result.unchanged, edge)
    except hf_errors.RepositoryNotFoundError:
        raise ModelNotFoundError(f"{base} has no repo {repo} (or it needs a token)") from None
    except hf_errors.RevisionNotFoundError:
        raise RevisionNotFoundError(f"{repo} has no revision {rev!r} at {base}") from None
    except hf_errors.EntryNotFoundError as exc:
        raise NotFoundError(str(exc)) from None
    except hf_errors.HfHubHTTPError as exc:
        raise StorageError(f"{base}: {exc}".splitlines()[0]) from None
