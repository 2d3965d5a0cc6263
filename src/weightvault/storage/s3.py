"""Amazon S3 (and S3-compatible stores) through boto3.

Why boto3 and not a faster native client: it resolves credentials exactly like every other AWS
tool (env, profiles, SSO, container and instance roles), its errors carry codes we can classify
precisely for ``retry.py``, and on large objects it was as fast as obstore in our measurements
(docs/backends.md). Multipart is done here rather than by boto3's transfer manager so each part
is retried alone under our policy, memory stays at ``part_size * max_concurrency``, and an
object only appears when ``CompleteMultipartUpload`` succeeds (atomic publish).

Files up to ``multipart_threshold`` (default 128 MiB, above a push's packs) go up as one streamed
``PutObject`` instead: a pack is then one request, not create + parts + complete, and the upload
reads the file as it sends it, so no part is held in memory. A push gets its parallelism from
several packs in flight (``vault.packer``) rather than from parts of one.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions as bce
import botocore.session
from botocore import UNSIGNED
from botocore.config import Config

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
    run_parts,
)
from weightvault.storage.upload import put_file_in_parts, put_retried

PROVIDER = "s3"
MiB = 1 << 20
MIN_PART = 5 * MiB  # S3's floor for every part but the last
MAX_PARTS = 10_000
#: files up to this size go up in one streamed PutObject (AWS allows up to 5 GiB)
DEFAULT_MULTIPART_THRESHOLD = 128 * MiB
#: packs a push uploads at once (``vault.packer``): each is one streamed request, so a few in
#: flight keep the link busy without holding any pack in memory
PACK_UPLOADS = 3

_MISSING = frozenset({"NoSuchKey", "404", "NotFound"})
_AUTH = frozenset({
    "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken",
    "InvalidToken", "TokenRefreshRequired", "AuthorizationHeaderMalformed", "403", "401",
})  # fmt: skip
_TRANSIENT_CODES = frozenset({
    "SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout", "Throttling",
    "ThrottlingException", "RequestLimitExceeded", "ConditionalRequestConflict", "OperationAborted",
})  # fmt: skip


_loader_lock = threading.Lock()
_shared_loader: Any = None


def _botocore_session() -> Any:
    """A fresh session (own credentials and config) sharing one model loader.

    Loading botocore's JSON service models is most of the ~150-300 ms a new client costs; the
    loader caches them, so backends opened after the first cost a few milliseconds.
    """
    global _shared_loader
    session = botocore.session.get_session()
    with _loader_lock:
        if _shared_loader is None:
            _shared_loader = session.get_component("data_loader")
        else:
            session.register_component("data_loader", _shared_loader)
    return session


def _error_code(exc: bce.ClientError) -> tuple[str, int]:
    response: dict[str, Any] = exc.response
    code = str(response.get("Error", {}).get("Code", ""))
    status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return code, status


class S3Backend:
    """Objects under ``s3://bucket/prefix``; see the module docstring for why it looks like this."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        session_token: str | None = None,
        profile: str | None = None,
        anonymous: bool = False,
        create: bool = False,
        part_size: int = 16 * MiB,
        max_concurrency: int = 4,
        multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        if not bucket:
            raise InvalidInputError("s3: a bucket name is required")
        self.bucket = bucket
        self.prefix = split_prefix(prefix)
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self.part_size = max(MIN_PART, int(part_size))
        self.max_concurrency = max(1, int(max_concurrency))
        self.multipart_threshold = int(multipart_threshold)
        self.pack_uploads = PACK_UPLOADS
        if not MIN_PART <= self.multipart_threshold <= 5 * 1024 * MiB:
            raise InvalidInputError("s3: multipart_threshold must be between 5 MiB and 5 GiB")
        self._retry = Retrier(PROVIDER, retry or RetryPolicy(), self._classify)
        try:
            session = boto3.session.Session(
                botocore_session=_botocore_session(),
                aws_access_key_id=access_key_id,
                aws_secret_access_key=secret_access_key,
                aws_session_token=session_token,
                region_name=region,
                profile_name=profile,
            )
            if not anonymous and session.get_credentials() is None:
                raise CredentialsError(
                    "s3: no AWS credentials found (looked at the store options, AWS_ACCESS_KEY_ID/"
                    "AWS_SECRET_ACCESS_KEY, AWS_PROFILE and ~/.aws files, web identity, container "
                    "and instance roles); configure one of them or pass anonymous=True for a public bucket"
                )
        except (bce.ProfileNotFound, bce.PartialCredentialsError, bce.CredentialRetrievalError,
                bce.NoCredentialsError) as exc:  # fmt: skip
            raise CredentialsError(f"s3: cannot load AWS credentials: {exc}") from exc
        # botocore itself reads AWS_ENDPOINT_URL(_S3) when no endpoint_url is given.
        env = os.environ
        custom_endpoint = endpoint_url or env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
        config = Config(
            region_name=session.region_name or "us-east-1",
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"total_max_attempts": 1, "mode": "standard"},  # Retrier owns retries
            max_pool_connections=max(16, 2 * self.max_concurrency),
            # Path style for custom endpoints (MinIO, Ceph, moto) that lack wildcard DNS.
            s3={"addressing_style": "path" if custom_endpoint else "auto"},
            # CRC trailers broke several S3-compatible servers; chunks carry their own hashes.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            signature_version=UNSIGNED if anonymous else None,
        )
        self._client = session.client("s3", endpoint_url=endpoint_url or None, config=config)
        if create:
            self._create_bucket(session.region_name)

    # -- plumbing -------------------------------------------------------------------------

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _classify(self, exc: BaseException, what: str) -> Transient | WeightvaultError | None:
        if isinstance(exc, bce.ClientError):
            code, status = _error_code(exc)
            if code in _TRANSIENT_CODES or status in TRANSIENT_STATUSES:
                return TRANSIENT
            if code in _MISSING:
                return MissingObjectError(f"s3: {what}: no such object in {self.url}")
            if code == "NoSuchBucket":
                return StorageError(f"s3: {what}: bucket {self.bucket!r} does not exist")
            if code == "PreconditionFailed" or status == 412:
                return ObjectExistsError(f"s3: {what}: object already exists in {self.url}")
            if code in _AUTH or status in (401, 403):
                return CredentialsError(
                    f"s3: {what}: access refused ({code or status}); check AWS credentials"
                )
            if code in ("KeyTooLongError", "InvalidArgument", "InvalidObjectName"):
                return InvalidInputError(f"s3: {what}: {describe(exc)}")
            return StorageError(f"s3: {what}: {describe(exc)}")
        if isinstance(
            exc, bce.NoCredentialsError | bce.PartialCredentialsError | bce.CredentialRetrievalError
        ):
            return CredentialsError(f"s3: {what}: {exc}")
        if isinstance(
            exc,
            bce.ConnectionError | bce.HTTPClientError | bce.IncompleteReadError | bce.ResponseStreamingError,
        ) or is_network_error(exc):
            return TRANSIENT
        if isinstance(exc, bce.BotoCoreError):
            return StorageError(f"s3: {what}: {describe(exc)}")
        return None

    def _create_bucket(self, region: str | None) -> None:
        def create() -> None:
            try:
                self._client.head_bucket(Bucket=self.bucket)
                return
            except bce.ClientError as exc:
                if _error_code(exc)[0] not in ("404", "NoSuchBucket", "NotFound"):
                    raise
            kwargs: dict[str, Any] = {"Bucket": self.bucket}
            if region and region != "us-east-1":
                kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
            try:
                self._client.create_bucket(**kwargs)
            except bce.ClientError as exc:
                if _error_code(exc)[0] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise

        self._retry(f"create bucket {self.bucket}", create)

    # -- writes ---------------------------------------------------------------------------

    def put(self, key: str, data: bytes | bytearray | memoryview, *, if_absent: bool = False) -> None:
        full = self._key(key)
        view = memoryview(data).cast("B")
        if view.nbytes > self.multipart_threshold:
            self._multipart(key, full, view.nbytes, lambda off, n: bytes(view[off : off + n]), if_absent)
            return
        body = bytes(view) if not isinstance(data, bytes | bytearray) else data
        extra = {"IfNoneMatch": "*"} if if_absent else {}

        def send() -> None:
            self._client.put_object(Bucket=self.bucket, Key=full, Body=body, **extra)

        put_retried(self._retry, key, body, send, self.get)

    def put_file(self, key: str, path: Path, *, consume: bool = False) -> None:
        full = self._key(key)
        src = Path(path)
        try:
            size = src.stat().st_size
        except FileNotFoundError as exc:
            raise InvalidInputError(f"s3: put_file {key}: source {src} does not exist") from exc
        except OSError as exc:
            raise StorageError(f"s3: put_file {key}: reading {src}: {exc}") from exc
        if size > self.multipart_threshold:
            put_file_in_parts(
                "s3",
                key,
                src,
                consume=consume,
                single_request_limit=0,
                put_bytes=lambda data: self.put(key, data),
                put_parts=lambda n, read: self._multipart(key, full, n, read, False),
            )
            return
        self._put_streamed(key, full, src, size)
        if consume:
            src.unlink(missing_ok=True)

    def _put_streamed(self, key: str, full: str, src: Path, size: int) -> None:
        """One PutObject whose body is read from the file as it is sent (each try reopens it)."""

        def send() -> None:
            try:
                with open(src, "rb") as body:
                    if os.fstat(body.fileno()).st_size != size:
                        raise StorageError(f"s3: put {key}: source changed size during upload")
                    self._client.put_object(Bucket=self.bucket, Key=full, Body=body, ContentLength=size)
            except FileNotFoundError as exc:
                raise InvalidInputError(f"s3: put_file {key}: source {src} does not exist") from exc

        self._retry(f"put {key}", send)

    def _multipart(
        self, key: str, full: str, size: int, read: Callable[[int, int], bytes], if_absent: bool
    ) -> None:
        part_size = max(self.part_size, -(-size // MAX_PARTS))
        count = -(-size // part_size)
        upload_id: str = self._retry(
            f"start upload of {key}",
            lambda: self._client.create_multipart_upload(Bucket=self.bucket, Key=full)["UploadId"],
        )

        def send(index: int) -> dict[str, Any]:
            offset = index * part_size
            length = min(part_size, size - offset)
            data = read(offset, length)
            if len(data) != length:
                raise StorageError(f"s3: put {key}: source changed size during upload")
            response = self._retry(
                f"upload part {index + 1}/{count} of {key}",
                lambda: self._client.upload_part(
                    Bucket=self.bucket, Key=full, UploadId=upload_id, PartNumber=index + 1, Body=data
                ),
            )
            return {"PartNumber": index + 1, "ETag": response["ETag"]}

        try:
            parts = run_parts(count, send, self.max_concurrency)
            extra = {"IfNoneMatch": "*"} if if_absent else {}
            tries = 0

            def complete() -> None:
                nonlocal tries
                tries += 1
                try:
                    self._client.complete_multipart_upload(
                        Bucket=self.bucket, Key=full, UploadId=upload_id,
                        MultipartUpload={"Parts": parts}, **extra,
                    )  # fmt: skip
                except bce.ClientError as exc:
                    # The try whose answer was lost completed it: the upload id is gone, the object is there.
                    if tries > 1 and _error_code(exc)[0] == "NoSuchUpload" and self.stat(key).size == size:
                        return
                    raise

            self._retry(f"complete upload of {key}", complete)
        except BaseException:
            # Best effort: a lifecycle rule reaps what a dead server kept.
            with contextlib.suppress(Exception):
                self._client.abort_multipart_upload(Bucket=self.bucket, Key=full, UploadId=upload_id)
            raise

    # -- reads ----------------------------------------------------------------------------

    def get(self, key: str) -> bytes:
        full = self._key(key)

        def fetch() -> bytes:
            response = self._client.get_object(Bucket=self.bucket, Key=full)
            body: bytes = response["Body"].read()
            return body

        return self._retry(f"get {key}", fetch)

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        full = self._key(key)
        if offset < 0 or length < 0:
            raise InvalidInputError(f"s3: get_range {key}: negative offset or length")
        if length == 0:
            self.stat(key)  # still report a missing object
            return b""

        def fetch() -> bytes:
            try:
                response = self._client.get_object(
                    Bucket=self.bucket, Key=full, Range=f"bytes={offset}-{offset + length - 1}"
                )
            except bce.ClientError as exc:
                if _error_code(exc)[0] == "InvalidRange":  # offset at or past the end
                    return b""
                raise
            body: bytes = response["Body"].read()
            return body

        return self._retry(f"get_range {key}", fetch)

    def stat(self, key: str) -> ObjectInfo:
        full = self._key(key)
        response = self._retry(f"stat {key}", lambda: self._client.head_object(Bucket=self.bucket, Key=full))
        return ObjectInfo(key, int(response["ContentLength"]), response["LastModified"].timestamp())

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
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": base + prefix}
            if token:
                kwargs["ContinuationToken"] = token

            def fetch(kw: dict[str, Any] = kwargs) -> dict[str, Any]:
                page: dict[str, Any] = self._client.list_objects_v2(**kw)
                return page

            page = self._retry(f"list {prefix!r}", fetch)
            for item in page.get("Contents", ()):
                rel = item["Key"][len(base) :]
                if is_valid_key(rel):  # skip console "folder" markers and other foreign names
                    yield ObjectInfo(rel, int(item["Size"]), item["LastModified"].timestamp())
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return

    def delete(self, key: str) -> None:
        full = self._key(key)
        self._retry(f"delete {key}", lambda: self._client.delete_object(Bucket=self.bucket, Key=full))

    @property
    def retries(self) -> int:
        """Transient failures retried so far (for metrics and tests)."""
        return self._retry.retries

    def close(self) -> None:
        self._client.close()
