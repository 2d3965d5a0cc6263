"""``RemoteVault``: the methods of the embedded ``Vault`` over a server's REST API v1.

Returned by ``Vault.open("http://host:8080", token=...)``. Results are the same domain objects
(``ModelInfo``, ``VersionInfo``, ``PushResult`` …) and failures the same typed errors. What only
makes sense next to the store (key init and rotation, the local cache) raises ConfigError; the
operations (recover, sync, repair, key and replica status, gc) run on the server for admins.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import quote

from weightvault.client import convert, file_upload
from weightvault.client.access import RemoteAccess
from weightvault.client.download import fetch_all
from weightvault.client.http import Http
from weightvault.client.upload import chunker_of, scan, send_missing
from weightvault.core.errors import (
    ConcurrentModificationError,
    ConfigError,
    InvalidInputError,
    MissingObjectError,
    NotUploadedError,
    RevisionNotFoundError,
)
from weightvault.core.names import check_label, check_model_name
from weightvault.core.revision import Ref, parse_ref
from weightvault.core.types import (
    GcReport,
    ModelInfo,
    PullResult,
    PushResult,
    RecoverReport,
    VerifyReport,
    VersionInfo,
)
from weightvault.vault.pull import make_dirs, plan, remove_dirs, select_files
from weightvault.vault.replication import RepairReport, SyncReport
from weightvault.vault.source import SourceFile, scan_source

Progress = Callable[[int], None]
COMMIT_ATTEMPTS = 3


def _ref(ref: str | Ref) -> Ref:
    return parse_ref(ref) if isinstance(ref, str) else ref


class RemoteVault:
    """A vault behind a weightvault server."""

    def __init__(self, url: str, token: str | None = None, *, workers: int = 4) -> None:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"server URL {url!r} must start with http:// or https://")
        self.url = url.rstrip("/")
        self.workers = workers
        self.http = Http(self.url, token, connections=max(16, 2 * workers))
        self.access = RemoteAccess(self.http)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> RemoteVault:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- reading the registry ------------------------------------------------------------------

    def whoami(self) -> dict[str, Any]:
        return self.http.json("GET", "/whoami")  # type: ignore[no-any-return]

    def model_names(self) -> list[str]:
        return [m["name"] for m in self.http.pages("/models")]

    def list_models(self) -> list[ModelInfo]:
        return [self.model(name) for name in self.model_names()]

    def model(self, name: str) -> ModelInfo:
        check_model_name(name)
        d = self.http.json("GET", f"/models/{name}")
        return ModelInfo(
            name, datetime.fromisoformat(d["created"]), tuple(self.list_versions(name)), d["aliases"]
        )

    def list_versions(self, model: str) -> list[VersionInfo]:
        check_model_name(model)
        return [convert.version(v) for v in self.http.pages(f"/models/{model}/-/versions")]

    def _latest(self, model: str) -> str:
        page = self.http.json("GET", f"/models/{model}/-/versions", params={"limit": 1})
        if not page["items"]:
            raise RevisionNotFoundError(f"model {model!r} has no versions")
        return str(page["items"][0]["label"])

    def show(self, ref: str | Ref) -> VersionInfo:
        r = _ref(ref)
        rev = r.revision or self._latest(r.model)
        return convert.version(self.http.json("GET", f"/models/{r.model}/-/versions/{rev}"))

    def resolve(self, ref: str | Ref) -> VersionInfo:
        return self.show(ref)

    # ---- push and pull -------------------------------------------------------------------------

    def push(
        self,
        model: str,
        source: Path | str,
        *,
        version: str | None = None,
        message: str = "",
        metadata: dict[str, str] | None = None,
        lineage: Sequence[dict[str, Any]] = (),
        parent: str | None = None,
        allow_empty: bool = False,
        default_ignores: bool = True,
        base: str | None = None,
        refuse_unsafe: bool = False,
        progress: Progress | None = None,
        on_start: Callable[[int], None] | None = None,
    ) -> PushResult:
        """As ``Vault.push``; the server validates safetensors files and scans pickles."""
        started = time.perf_counter()
        check_model_name(model)
        if version is not None:
            check_label(version)
        if base is not None:
            raise ConfigError("--base is not available through a server yet; push with an embedded vault")
        files = scan_source(source, default_ignores=default_ignores)
        if not files:
            raise InvalidInputError(
                f"source {source} has no files to push"
                + ("; empty versions are not made through a server" if allow_empty else "")
            )
        tick = progress or (lambda n: None)
        if on_start:
            on_start(sum(f.size for f in files))
        commit = {
            "version": version,
            "message": message,
            "metadata": dict(metadata or {}),
            "lineage": [dict(x) for x in lineage],
            "parent": parent,
            "refuse_unsafe": refuse_unsafe,
        }
        if self.http.json("GET", f"/models/{model}/-/upload-mode")["mode"] == "files":
            return self._push_files(model, files, commit, tick, started)
        chunker, max_request = chunker_of(self.http)
        with ThreadPoolExecutor(min(self.workers, 2), thread_name_prefix="wv-scan") as pool:
            scanned = list(pool.map(lambda f: scan(f, chunker, tick), files))
        sent_chunks = sent_bytes = 0
        body = {
            "files": [
                {
                    "path": f.source.path,
                    "size": f.source.size,
                    "sha256": f.sha256,
                    "chunks": [[cid.hex(), n] for cid, _, n in f.chunks],
                }
                for f in scanned
            ],
            **commit,
        }
        for attempt in range(COMMIT_ATTEMPTS):
            # ask, send what is missing, commit; a gc that removed freshly sent data in between
            # makes the commit fail with ConcurrentModificationError, and asking again resends it
            n, nbytes = send_missing(self.http, model, scanned, self.workers, max_request, lambda n: None)
            sent_chunks, sent_bytes = sent_chunks + n, sent_bytes + nbytes
            try:
                d = self.http.json("POST", f"/models/{model}/-/versions", json=body)
                break
            except (ConcurrentModificationError, MissingObjectError):
                if attempt == COMMIT_ATTEMPTS - 1:
                    raise
        return convert.push(
            d,
            bytes_read=sum(f.size for f in files),
            bytes_written=sent_bytes,
            chunks_new=sent_chunks,
            seconds=time.perf_counter() - started,
        )

    def _push_files(
        self, model: str, files: list[SourceFile], commit: dict[str, Any], tick: Progress, started: float
    ) -> PushResult:
        """A push in whole files (``client.file_upload``): the server encrypts or float-compresses."""
        shas = file_upload.hash_files(files, min(self.workers, 2), tick)
        body = {"files": file_upload.announced(files, shas), **commit}
        sent_bytes = 0
        for attempt in range(COMMIT_ATTEMPTS):
            # as for chunks: a gc that removed freshly sent data before the commit makes it fail
            # with MissingObjectError, and asking again sends those files again
            _n, nbytes = file_upload.send_missing_files(self.http, model, files, shas, self.workers)
            sent_bytes += nbytes
            try:
                d = self.http.json("POST", f"/models/{model}/-/versions/from-uploads", json=body)
                break
            except (ConcurrentModificationError, NotUploadedError):
                if attempt == COMMIT_ATTEMPTS - 1:
                    raise
        return convert.push(
            d,
            bytes_read=sum(f.size for f in files),
            bytes_written=sent_bytes,
            chunks_new=0,
            seconds=time.perf_counter() - started,
        )

    def pull(
        self,
        ref: str | Ref,
        dest: Path | str,
        *,
        include: Sequence[str] | None = None,
        exclude: Sequence[str] | None = None,
        force: bool = False,
        provider: str | None = None,
        progress: Progress | None = None,
        on_start: Callable[[int], None] | None = None,
        link_mode: str | None = None,
    ) -> PullResult:
        started = time.perf_counter()
        if provider is not None:
            raise ConfigError("--provider chooses a replica of a local vault; the server reads its own")
        if link_mode not in (None, "auto", "copy"):
            raise ConfigError(f"link mode {link_mode!r} needs a local cache; a remote pull writes the files")
        info = self.show(ref)
        dest_path = Path(dest).absolute()
        files = select_files(info.files, include, exclude)
        unmatched = tuple(
            p for p in include or () if not any(fnmatch.fnmatchcase(f.path, p) for f in info.files)
        )
        planned = plan(dest_path, files, force, None)
        if on_start:
            on_start(sum(p.entry.size for p in planned))
        created: list[Path] = []
        fetched = 0
        if files:
            make_dirs(dest_path, created)
            try:
                for p in planned:
                    make_dirs(p.target.parent, created)
                base = f"/models/{info.model}/-/versions/{info.commit}/files/"
                urls = [(base + quote(p.entry.path, safe="/"), p) for p in planned]
                fetched = fetch_all(self.http, urls, self.workers, progress or (lambda n: None))
            except BaseException:
                if not any(dest_path.rglob("*.wv-part")):  # keep folders that hold resumable parts
                    remove_dirs(created)
                raise
        return PullResult(
            version=info,
            files=tuple(f.path for f in files),
            bytes_total=sum(f.size for f in files),
            bytes_from_cache=0,
            bytes_from_store=fetched,
            seconds=time.perf_counter() - started,
            unmatched_includes=unmatched,
            link_mode=link_mode or "auto",
            placement={"written": len(planned)} if planned else {},
        )

    def missing_chunks(self, model: str, ids: Sequence[bytes]) -> list[bytes]:
        """Which of these chunk ids the server's vault lacks (the first step of a push)."""
        check_model_name(model)
        body = {"ids": [c.hex() for c in ids]}
        answer = self.http.json("POST", f"/models/{model}/-/chunks/missing", json=body)
        return [bytes.fromhex(c) for c in answer["missing"]]

    # ---- changing names ------------------------------------------------------------------------

    def delete(self, ref: str | Ref, *, primary_only: bool = False) -> VersionInfo:
        r = _ref(ref)
        if r.revision is None:
            raise RevisionNotFoundError(f"say which version of {r.model} to delete (MODEL@VERSION)")
        if primary_only:
            raise ConfigError("--primary-only is for a local vault with replicas")
        return convert.version(self.http.json("DELETE", f"/models/{r.model}/-/versions/{r.revision}"))

    def set_alias(self, model: str, alias: str, revision: str) -> VersionInfo:
        check_model_name(model)
        check_label(alias, "alias")
        d = self.http.json("PUT", f"/models/{model}/-/aliases/{alias}", json={"revision": revision})
        return convert.version(d)

    def remove_alias(self, model: str, alias: str) -> None:
        check_model_name(model)
        check_label(alias, "alias")
        self.http.json("DELETE", f"/models/{model}/-/aliases/{alias}")

    # ---- maintenance ---------------------------------------------------------------------------

    def verify(
        self, ref: str | Ref | None = None, *, read_data: bool = False, progress: Progress | None = None
    ) -> VerifyReport:
        params: dict[str, Any] = {"read_data": read_data}
        if ref is not None:
            r = _ref(ref)
            params["model"] = r.model
            if r.revision:
                params["rev"] = r.revision
        d = self.http.json("POST", "/verify", params=params)
        return VerifyReport(
            d["checked_versions"],
            d["checked_chunks"],
            d["checked_bytes"],
            d["problems"],
            d["affected_versions"],
        )

    def gc(
        self, *, grace_seconds: float | None = None, dry_run: bool = False, force: bool = False
    ) -> GcReport:
        if grace_seconds is not None:
            raise ConfigError("--grace is not available through a server: its gc uses the configured period")
        return GcReport(**self.http.json("POST", "/gc", params={"dry_run": dry_run, "force": force}))

    def gc_status(self) -> dict[str, Any]:
        return self.http.json("GET", "/gc")  # type: ignore[no-any-return]

    def stats(self) -> dict[str, Any]:
        return {**self.gc_status(), "server": self.url}

    def _local_only(self, what: str) -> NoReturn:
        raise ConfigError(f"{what} is not available through a server; run it on the server's machine")

    # ---- operations (global administrators; each run is in the server's audit log) ------------

    def recover(self) -> RecoverReport:
        """Rebuild the server's index from its store."""
        d = self.http.json("POST", "/ops/recover")
        return RecoverReport(d["counts"], d["problems"])

    def sync(self, progress: Progress | None = None) -> SyncReport:
        """Copy to every secondary replica of the server's store what it lacks."""
        return SyncReport(**{k: v for k, v in self.http.json("POST", "/ops/sync").items() if k != "ok"})

    def repair(self, progress: Progress | None = None) -> RepairReport:
        """Re-read every object on every replica of the server's store; rewrite bad copies."""
        return RepairReport(**{k: v for k, v in self.http.json("POST", "/ops/repair").items() if k != "ok"})

    def replica_status(self, ref: str | Ref) -> dict[str, bool | str]:
        """Per replica of the server's store: whether the version is complete there (admins)."""
        r = _ref(ref)
        params = {"model": r.model, **({"rev": r.revision} if r.revision else {})}
        return self.http.json("GET", "/ops/replicas", params=params)["complete"]  # type: ignore[no-any-return]

    def replicas(self) -> list[str]:
        """The server store's replica names, the primary first."""
        return self.http.json("GET", "/ops/replicas")["replicas"]  # type: ignore[no-any-return]

    def key_status(self, model: str | None = None) -> dict[str, Any]:
        """As ``Vault.key_status``, without any secret (the server drops them)."""
        if model is not None:
            check_model_name(model)
        return self.http.json("GET", "/ops/keys", params={"model": model} if model else None)  # type: ignore[no-any-return]

    @property
    def cache(self) -> None:
        return None

    def __getattr__(self, name: str) -> NoReturn:
        if name in _LOCAL_ONLY:
            self._local_only(name)
        raise AttributeError(name)


#: façade methods that need the store and its keys next to the caller
_LOCAL_ONLY = frozenset(
    {
        "init_keys",
        "rotate_keys",
        "rotate_domain",
        "accept_alias",
        "version_keys",
        "object_ok",
        "tensors",
        "lineage",
        "pull_with_base",
    }
)
