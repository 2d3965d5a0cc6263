"""Google Cloud Storage through google-cloud-storage.

Why this client: it is Google's own, resolves Application Default Credentials like gcloud does,
supports generation preconditions (``ifGenerationMatch=0`` is our atomic create-if-absent) and
works against the GCS emulator we test with (obstore's GCS store needs XML-API calls the
emulator lacks; gcsfs was faster on downloads but has no conditional create and needs an
experimental-feature switch to avoid 60 s stalls). See docs/backends.md for the numbers.

Large objects use GCS's resumable protocol, driven here: one session per object, chunks read
from the file as they are sent (memory = one chunk), each chunk retried under our policy after
asking the server how much it already has, so a flaky link resumes instead of restarting.
The object appears only when the last chunk lands (atomic publish). GCS resumable uploads are
sequential by design; parallelism comes from uploading several objects at once.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import google.auth
import google.auth.exceptions as gae
import requests
from google.api_core import exceptions as gapi
from google.auth.credentials import AnonymousCredentials, Credentials
from google.cloud import storage
from google.cloud.storage import exceptions as gcs_exc

from weightvault.core.errors import (
    CredentialsError,
    InvalidInputError,
    MissingObjectError,
    ObjectExistsError,
    StorageError,
    WeightvaultError,
)
from weightvault.storage.backend import ObjectInfo, check_key, is_valid_key, split_prefix
from weightvault.storage.retry import (
    TRANSIENT,
    TRANSIENT_STATUSES,
    Retrier,
    RetryPolicy,
    Transient,
    describe,
    is_network_error,
)
from weightvault.storage.upload import put_file_in_parts, put_retried

PROVIDER = "gcs"
MiB = 1 << 20
CHUNK_UNIT = 256 * 1024  # resumable chunks must be multiples of this (except the last)
SCOPES = ("https://www.googleapis.com/auth/devstorage.read_write",)


class _HTTPStatusError(Exception):
    """A resumable-upload response we did not expect, kept with its status for classifying."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"HTTP {status}: {text[:200]}")
        self.status = status


class GCSBackend:
    """Objects under ``gs://bucket/prefix``; see the module docstring for why it looks like this."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        project_id: str | None = None,
        endpoint_url: str | None = None,
        credentials_file: str | None = None,
        anonymous: bool | None = None,
        create: bool = False,
        chunk_size: int = 16 * MiB,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        if not bucket:
            raise InvalidInputError("gcs: a bucket name is required")
        self.bucket_name = bucket
        self.prefix = split_prefix(prefix)
        self.url = f"gs://{bucket}/{self.prefix}" if self.prefix else f"gs://{bucket}"
        self.chunk_size = max(CHUNK_UNIT, int(chunk_size) // CHUNK_UNIT * CHUNK_UNIT)
        self._timeout = (connect_timeout, read_timeout)
        self._retry = Retrier(PROVIDER, retry or RetryPolicy(), self._classify)
        emulator = os.environ.get("STORAGE_EMULATOR_HOST")
        endpoint = endpoint_url or emulator
        if endpoint and not endpoint.startswith(("http://", "https://")):
            endpoint = f"http://{endpoint}"
        # An emulator endpoint needs no credentials, like gcloud's own convention; say
        # anonymous=False to authenticate against a custom endpoint anyway.
        credentials, project = self._credentials(credentials_file, anonymous, bool(endpoint))
        options: dict[str, Any] = {"api_endpoint": endpoint} if endpoint else {}
        self._client = storage.Client(
            project=project_id or project or "<none>", credentials=credentials, client_options=options
        )
        # google-cloud-storage 3.x fetches bucket metadata in a background thread for tracing
        # attributes: an extra request per bucket we neither need nor can retry or bound.
        if getattr(self._client, "_bucket_metadata_cache", None) is not None:
            self._client._bucket_metadata_cache = None
        self._bucket = self._client.bucket(bucket)
        self._local = threading.local()  # one requests.Session per thread for upload chunks
        self._sessions: list[requests.Session] = []
        self._sessions_lock = threading.Lock()
        if create:
            self._create_bucket()

    @staticmethod
    def _credentials(
        credentials_file: str | None, anonymous: bool | None, custom_endpoint: bool
    ) -> tuple[Credentials, str | None]:
        if anonymous or (anonymous is None and custom_endpoint and not credentials_file):
            return AnonymousCredentials(), None  # type: ignore[no-untyped-call]
        if credentials_file:
            # A service-account key file; other credential types go through ADC (below).
            from google.oauth2 import service_account

            try:
                sa = service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
                    credentials_file, scopes=SCOPES
                )
            except (OSError, ValueError) as exc:
                raise CredentialsError(
                    f"gcs: cannot load service-account credentials from {credentials_file}: {describe(exc)}"
                ) from exc
            return sa, sa.project_id
        try:
            creds, project = google.auth.default(scopes=SCOPES)
        except gae.DefaultCredentialsError as exc:
            raise CredentialsError(
                "gcs: no Google credentials found (looked at credentials_file, "
                "GOOGLE_APPLICATION_CREDENTIALS, gcloud application-default login and the metadata "
                f"server); configure one of them: {describe(exc)}"
            ) from exc
        return creds, project

    # -- plumbing -------------------------------------------------------------------------

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _classify(self, exc: BaseException, what: str) -> Transient | WeightvaultError | None:
        status: int | None = None
        if isinstance(exc, gapi.GoogleAPICallError):
            status = int(exc.code) if exc.code is not None else None
        elif isinstance(exc, _HTTPStatusError):
            status = exc.status
        elif isinstance(exc, gcs_exc.InvalidResponse):
            status = getattr(getattr(exc, "response", None), "status_code", None)
        if status is not None:
            if status in TRANSIENT_STATUSES:
                return TRANSIENT
            if status == 404:
                if "bucket" in str(exc).lower():
                    return StorageError(f"gcs: {what}: bucket {self.bucket_name!r} does not exist")
                return MissingObjectError(f"gcs: {what}: no such object in {self.url}")
            if status == 412:
                return ObjectExistsError(f"gcs: {what}: object already exists in {self.url}")
            if status in (401, 403):
                return CredentialsError(f"gcs: {what}: access refused ({status}); check Google credentials")
            if status == 400:
                return InvalidInputError(f"gcs: {what}: {describe(exc)}")
            return StorageError(f"gcs: {what}: {describe(exc)}")
        if isinstance(exc, gae.RefreshError | gae.DefaultCredentialsError):
            return CredentialsError(f"gcs: {what}: cannot get a Google access token: {describe(exc)}")
        if isinstance(
            exc,
            requests.ConnectionError | requests.Timeout | requests.exceptions.ChunkedEncodingError
            | gae.TransportError | gcs_exc.DataCorruption,
        ) or is_network_error(exc):  # fmt: skip
            return TRANSIENT
        if isinstance(exc, gapi.GoogleAPIError | requests.RequestException):
            return StorageError(f"gcs: {what}: {describe(exc)}")
        return None

    def _create_bucket(self) -> None:
        def create() -> None:
            if self._client.lookup_bucket(self.bucket_name, retry=None, timeout=self._timeout) is not None:
                return
            with contextlib.suppress(gapi.Conflict):  # another process created it first
                self._client.create_bucket(self.bucket_name, retry=None, timeout=self._timeout)

        self._retry(f"create bucket {self.bucket_name}", create)

    def _session(self) -> requests.Session:
        """Resumable session URLs authorise themselves; a plain per-thread session suffices."""
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            with self._sessions_lock:
                self._sessions.append(session)
        return session

    # -- writes ---------------------------------------------------------------------------

    def put(self, key: str, data: bytes | bytearray | memoryview, *, if_absent: bool = False) -> None:
        full = self._key(key)
        view = memoryview(data).cast("B")
        if view.nbytes > self.chunk_size:
            self._resumable(key, full, view.nbytes, lambda off, n: bytes(view[off : off + n]), if_absent)
            return
        body = bytes(view)

        def send() -> None:
            self._bucket.blob(full).upload_from_string(
                body,
                content_type="application/octet-stream",
                if_generation_match=0 if if_absent else None,
                checksum=None,  # TLS guards the wire; chunks carry their own hashes
                retry=None,
                timeout=self._timeout,
            )

        put_retried(self._retry, key, body, send, self.get)

    def put_file(self, key: str, path: Path, *, consume: bool = False) -> None:
        full = self._key(key)
        put_file_in_parts(
            "gcs",
            key,
            path,
            consume=consume,
            single_request_limit=self.chunk_size,
            put_bytes=lambda data: self.put(key, data),
            put_parts=lambda size, read: self._resumable(key, full, size, read, False),
        )

    def _resumable(
        self, key: str, full: str, size: int, read: Callable[[int, int], bytes], if_absent: bool
    ) -> None:
        session_url: str = self._retry(
            f"start upload of {key}",
            lambda: self._bucket.blob(full).create_resumable_upload_session(
                content_type="application/octet-stream",
                size=size,
                if_generation_match=0 if if_absent else None,
                checksum=None,
                retry=None,
                timeout=self._timeout,
            ),
        )
        http = self._session()
        committed = 0  # bytes the server has acknowledged
        unsure = False  # after a failed try, ask before sending again

        def committed_from(response: requests.Response) -> int:
            if response.status_code in (200, 201):
                return size
            if response.status_code == 308:
                rng = response.headers.get("Range")  # "bytes=0-N"
                return int(rng.rpartition("-")[2]) + 1 if rng else 0
            raise _HTTPStatusError(response.status_code, response.text)

        def step() -> int:
            nonlocal unsure
            if unsure:
                response = http.put(
                    session_url, data=b"", headers={"Content-Range": f"bytes */{size}"}, timeout=self._timeout
                )
                done = committed_from(response)
                unsure = False
                if done != committed:
                    return done
            length = min(self.chunk_size, size - committed)
            data = read(committed, length)
            if len(data) != length:
                raise StorageError(f"gcs: put {key}: source changed size during upload")
            unsure = True
            response = http.put(
                session_url,
                data=data,
                headers={"Content-Range": f"bytes {committed}-{committed + length - 1}/{size}"},
                timeout=self._timeout,
            )
            done = committed_from(response)
            unsure = False
            return done

        stalls = 0
        while committed < size:
            before = committed
            committed = self._retry(f"upload {key} at byte {committed}", step)
            stalls = stalls + 1 if committed <= before else 0
            if stalls >= 3:  # the server keeps refusing to persist: do not loop for ever
                raise StorageError(f"gcs: put {key}: upload made no progress at byte {committed}")

    # -- reads ----------------------------------------------------------------------------

    def get(self, key: str) -> bytes:
        full = self._key(key)
        return self._retry(
            f"get {key}",
            lambda: bytes(self._bucket.blob(full).download_as_bytes(retry=None, timeout=self._timeout)),
        )

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        full = self._key(key)
        if offset < 0 or length < 0:
            raise InvalidInputError(f"gcs: get_range {key}: negative offset or length")
        if length == 0:
            self.stat(key)  # still report a missing object
            return b""

        def fetch() -> bytes:
            try:
                return bytes(
                    self._bucket.blob(full).download_as_bytes(
                        start=offset,
                        end=offset + length - 1,
                        checksum=None,
                        retry=None,
                        timeout=self._timeout,
                    )
                )
            except gapi.RequestRangeNotSatisfiable:  # offset at or past the end
                return b""

        return self._retry(f"get_range {key}", fetch)

    def stat(self, key: str) -> ObjectInfo:
        full = self._key(key)
        blob = self._retry(
            f"stat {key}", lambda: self._bucket.get_blob(full, retry=None, timeout=self._timeout)
        )
        if blob is None:
            raise MissingObjectError(f"gcs: stat {key}: no such object in {self.url}")
        return ObjectInfo(key, int(blob.size or 0), _mtime(blob))

    def exists(self, key: str) -> bool:
        try:
            self.stat(key)
        except MissingObjectError:
            return False
        return True

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        head = prefix.rpartition("/")[0]
        if head:
            check_key(head)
        base = f"{self.prefix}/" if self.prefix else ""
        token: str | None = None
        while True:

            def page(token: str | None = token) -> tuple[list[Any], str | None]:
                blobs = self._client.list_blobs(
                    self._bucket, prefix=base + prefix, page_token=token, retry=None, timeout=self._timeout
                )
                items = list(next(blobs.pages, []))
                return items, blobs.next_page_token

            items, token = self._retry(f"list {prefix!r}", page)
            for blob in items:
                rel = blob.name[len(base) :]
                if is_valid_key(rel):
                    yield ObjectInfo(rel, int(blob.size or 0), _mtime(blob))
            if not token:
                return

    def delete(self, key: str) -> None:
        full = self._key(key)

        def remove() -> None:
            try:
                self._bucket.blob(full).delete(retry=None, timeout=self._timeout)
            except gapi.NotFound as exc:
                if "bucket" in str(exc).lower():
                    raise
                return

        self._retry(f"delete {key}", remove)

    @property
    def retries(self) -> int:
        """Transient failures retried so far (for metrics and tests)."""
        return self._retry.retries

    def close(self) -> None:
        with self._sessions_lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()
        self._client.close()


def _mtime(blob: Any) -> float:
    updated = blob.updated or blob.time_created
    return float(updated.timestamp()) if updated is not None else 0.0
