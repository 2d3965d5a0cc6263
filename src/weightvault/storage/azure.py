"""Azure Blob Storage through azure-storage-blob.

Why this client: it is Microsoft's own, understands connection strings, account keys, SAS
tokens and (with azure-identity installed) managed identities, and maps service errors to
stable error codes we can classify for ``retry.py``. obstore had lower per-request latency
on Azurite but no connection-string support and errors we could only classify by parsing
messages; see docs/backends.md for the numbers.

Large objects are staged as blocks in parallel and published by one ``Put Block List``:
uncommitted blocks are invisible, so readers see the old object or the new one, never a mix.
Block ids carry a per-upload random tag, so two writers of the same key never commit each
other's blocks.
"""

from __future__ import annotations

import base64
import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from azure.core import MatchConditions
from azure.core import exceptions as azx
from azure.storage.blob import BlobBlock, BlobServiceClient, ContainerClient

from weightvault.core.errors import (
    ConcurrentModificationError,
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
    run_parts,
)
from weightvault.storage.upload import put_file_in_parts, put_retried

PROVIDER = "azure"
MiB = 1 << 20
MAX_BLOCKS = 50_000
COMMIT_TRIES = 3  # whole-upload restarts when a concurrent writer's commit discarded our blocks

_MISSING = frozenset({"BlobNotFound", "ResourceNotFound"})
_EXISTS = frozenset({"BlobAlreadyExists", "ConditionNotMet"})
_AUTH = frozenset({
    "AuthenticationFailed", "AuthorizationFailure", "AuthorizationPermissionMismatch",
    "InsufficientAccountPermissions", "InvalidAuthenticationInfo", "NoAuthenticationInformation",
})  # fmt: skip
_TRANSIENT_CODES = frozenset({"ServerBusy", "OperationTimedOut", "InternalError"})


def _code(exc: azx.HttpResponseError) -> str:
    """The service's error code; the SDK gives a str-valued enum whose str() is its repr."""
    code = getattr(exc, "error_code", None) or ""
    return str(getattr(code, "value", code))


class AzureBackend:
    """Objects under ``az://container/prefix``; see the module docstring for why it looks like this."""

    def __init__(
        self,
        container: str,
        prefix: str = "",
        *,
        connection_string: str | None = None,
        account_url: str | None = None,
        account_name: str | None = None,
        account_key: str | None = None,
        sas_token: str | None = None,
        create: bool = False,
        block_size: int = 8 * MiB,
        max_concurrency: int = 4,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        if not container:
            raise InvalidInputError("azure: a container name is required")
        self.container = container
        self.prefix = split_prefix(prefix)
        self.url = f"az://{container}/{self.prefix}" if self.prefix else f"az://{container}"
        self.block_size = max(1 * MiB, int(block_size))
        self.max_concurrency = max(1, int(max_concurrency))
        self._retry = Retrier(PROVIDER, retry or RetryPolicy(), self._classify)
        client_options: dict[str, Any] = {
            "retry_total": 0,  # Retrier owns retries
            "connection_timeout": connect_timeout,
            "read_timeout": read_timeout,
            "max_single_put_size": self.block_size,
            "max_block_size": self.block_size,
            "max_single_get_size": 4 * self.block_size,
            "max_chunk_get_size": self.block_size,
        }
        self._service = self._open(connection_string, account_url, account_name, account_key, sas_token,
                                   client_options)  # fmt: skip
        self._container: ContainerClient = self._service.get_container_client(container)
        if create:
            self._create_container()

    @staticmethod
    def _open(
        connection_string: str | None,
        account_url: str | None,
        account_name: str | None,
        account_key: str | None,
        sas_token: str | None,
        options: dict[str, Any],
    ) -> BlobServiceClient:
        """Explicit options first, then the az CLI's environment variables, then azure-identity."""
        env = os.environ
        connection_string = connection_string or (
            None if account_url else env.get("AZURE_STORAGE_CONNECTION_STRING")
        )
        if connection_string:
            try:
                return BlobServiceClient.from_connection_string(connection_string, **options)
            except ValueError as exc:
                raise CredentialsError(f"azure: invalid connection string: {exc}") from exc
        account_name = account_name or env.get("AZURE_STORAGE_ACCOUNT")
        if not account_url and account_name:
            account_url = f"https://{account_name}.blob.core.windows.net"
        if not account_url:
            raise CredentialsError(
                "azure: no credentials found: set a connection_string (or AZURE_STORAGE_CONNECTION_STRING), "
                "or account_url / AZURE_STORAGE_ACCOUNT with an account key, a SAS token or azure-identity"
            )
        account_name = account_name or _account_from_url(account_url)
        account_key = account_key or env.get("AZURE_STORAGE_KEY")
        sas_token = sas_token or env.get("AZURE_STORAGE_SAS_TOKEN")
        credential: Any
        if account_key:
            credential = {"account_name": account_name, "account_key": account_key}
        elif sas_token:
            credential = sas_token
        else:
            try:
                from azure.identity import DefaultAzureCredential
            except ImportError:
                raise CredentialsError(
                    f"azure: no credentials for {account_url}: give an account key (AZURE_STORAGE_KEY), "
                    "a SAS token (AZURE_STORAGE_SAS_TOKEN), or install azure-identity for Entra ID or "
                    "managed identity"
                ) from None
            credential = DefaultAzureCredential()
        return BlobServiceClient(account_url, credential=credential, **options)

    # -- plumbing -------------------------------------------------------------------------

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _classify(self, exc: BaseException, what: str) -> Transient | WeightvaultError | None:
        if isinstance(exc, azx.ClientAuthenticationError):
            return CredentialsError(f"azure: {what}: access refused ({_code(exc) or exc.status_code}); "
                                    "check Azure credentials")  # fmt: skip
        if isinstance(exc, azx.IncompleteReadError | azx.ServiceRequestError | azx.ServiceResponseError):
            return TRANSIENT
        if isinstance(exc, azx.HttpResponseError):
            code, status = _code(exc), int(exc.status_code or 0)
            if code in _TRANSIENT_CODES or status in TRANSIENT_STATUSES:
                return TRANSIENT
            if code == "ContainerNotFound":
                return StorageError(f"azure: {what}: container {self.container!r} does not exist")
            if code in _MISSING or (status == 404 and not code):
                return MissingObjectError(f"azure: {what}: no such object in {self.url}")
            if code in _EXISTS or status == 412:
                return ObjectExistsError(f"azure: {what}: object already exists in {self.url}")
            if code in _AUTH or status in (401, 403):
                return CredentialsError(
                    f"azure: {what}: access refused ({code or status}); check Azure credentials"
                )
            if status == 400 and code != "InvalidBlockList":
                return InvalidInputError(f"azure: {what}: {describe(exc)}")
            return StorageError(f"azure: {what}: {describe(exc)}")
        if is_network_error(exc):
            return TRANSIENT
        if isinstance(exc, azx.AzureError):
            return StorageError(f"azure: {what}: {describe(exc)}")
        return None

    def _create_container(self) -> None:
        def create() -> None:
            with contextlib.suppress(azx.ResourceExistsError):  # another process created it first
                self._container.create_container()

        self._retry(f"create container {self.container}", create)

    # -- writes ---------------------------------------------------------------------------

    def put(self, key: str, data: bytes | bytearray | memoryview, *, if_absent: bool = False) -> None:
        full = self._key(key)
        view = memoryview(data).cast("B")
        if view.nbytes > self.block_size:
            self._blocks(key, full, view.nbytes, lambda off, n: bytes(view[off : off + n]), if_absent)
            return
        body = bytes(view)

        def send() -> None:
            self._container.upload_blob(full, body, overwrite=not if_absent, max_concurrency=1)

        put_retried(self._retry, key, body, send, self.get)

    def put_file(self, key: str, path: Path, *, consume: bool = False) -> None:
        full = self._key(key)
        put_file_in_parts(
            "azure",
            key,
            path,
            consume=consume,
            single_request_limit=self.block_size,
            put_bytes=lambda data: self.put(key, data),
            put_parts=lambda size, read: self._blocks(key, full, size, read, False),
        )

    def _blocks(
        self, key: str, full: str, size: int, read: Callable[[int, int], bytes], if_absent: bool
    ) -> None:
        block_size = max(self.block_size, -(-size // MAX_BLOCKS))
        count = -(-size // block_size)
        blob = self._container.get_blob_client(full)
        for attempt in range(1, COMMIT_TRIES + 1):
            tag = uuid.uuid4().hex  # ids must be equal-length per blob and unique per upload

            def block_id(index: int, tag: str = tag) -> str:
                return base64.b64encode(f"{tag}{index:08d}".encode()).decode()

            def stage(index: int, block_id: Callable[[int], str] = block_id) -> None:
                offset = index * block_size
                length = min(block_size, size - offset)
                data = read(offset, length)
                if len(data) != length:
                    raise StorageError(f"azure: put {key}: source changed size during upload")
                self._retry(
                    f"upload block {index + 1}/{count} of {key}",
                    lambda: blob.stage_block(block_id(index), data, length=length),
                )

            run_parts(count, stage, self.max_concurrency)
            blocks = [BlobBlock(block_id=block_id(i)) for i in range(count)]
            conditions: dict[str, Any] = (
                {"etag": "*", "match_condition": MatchConditions.IfMissing} if if_absent else {}
            )

            def commit(blocks: list[BlobBlock] = blocks, conditions: dict[str, Any] = conditions) -> None:
                try:
                    blob.commit_block_list(blocks, **conditions)
                except azx.HttpResponseError as exc:
                    if _code(exc) == "InvalidBlockList":
                        raise _BlocksDiscarded from exc
                    raise

            try:
                self._retry(f"commit {key}", commit)
                return
            except _BlocksDiscarded as exc:
                # Committing a blob discards every uncommitted block, including a concurrent
                # writer's: the loser stages again rather than failing.
                if attempt == COMMIT_TRIES:
                    raise ConcurrentModificationError(
                        f"azure: put {key}: concurrent writers kept replacing the blob's staged blocks"
                    ) from exc

    # -- reads ----------------------------------------------------------------------------

    def get(self, key: str) -> bytes:
        full = self._key(key)
        return self._retry(
            f"get {key}",
            lambda: self._container.download_blob(full, max_concurrency=self.max_concurrency).readall(),
        )

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        full = self._key(key)
        if offset < 0 or length < 0:
            raise InvalidInputError(f"azure: get_range {key}: negative offset or length")
        if length == 0:
            self.stat(key)  # still report a missing object
            return b""

        def fetch() -> bytes:
            try:
                data: bytes = self._container.download_blob(full, offset=offset, length=length).readall()
            except azx.HttpResponseError as exc:
                if _code(exc) == "InvalidRange" or exc.status_code == 416:  # offset at or past the end
                    return b""
                raise
            return data

        return self._retry(f"get_range {key}", fetch)

    def stat(self, key: str) -> ObjectInfo:
        full = self._key(key)
        props = self._retry(
            f"stat {key}", lambda: self._container.get_blob_client(full).get_blob_properties()
        )
        return ObjectInfo(key, int(props.size), props.last_modified.timestamp())

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
                pages: Any = self._container.list_blobs(name_starts_with=base + prefix).by_page(
                    continuation_token=token
                )
                items = list(next(pages, []))
                return items, pages.continuation_token

            items, token = self._retry(f"list {prefix!r}", page)
            for props in items:
                rel = props.name[len(base) :]
                if is_valid_key(rel):
                    yield ObjectInfo(rel, int(props.size), props.last_modified.timestamp())
            if not token:
                return

    def delete(self, key: str) -> None:
        full = self._key(key)

        def remove() -> None:
            try:
                self._container.delete_blob(full, delete_snapshots="include")
            except azx.ResourceNotFoundError as exc:
                if _code(exc) == "ContainerNotFound":
                    raise

        self._retry(f"delete {key}", remove)

    @property
    def retries(self) -> int:
        """Transient failures retried so far (for metrics and tests)."""
        return self._retry.retries

    def close(self) -> None:
        self._service.close()


def _account_from_url(url: str) -> str:
    """``https://NAME.blob.core.windows.net`` or Azurite's ``http://host:port/NAME``."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ".blob." in host:
        return host.split(".", 1)[0]
    return parts.path.strip("/").split("/", 1)[0]


class _BlocksDiscarded(Exception):
    """Our staged blocks vanished before the commit (another writer committed the blob)."""
