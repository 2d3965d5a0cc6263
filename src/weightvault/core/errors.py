"""The one error hierarchy of weightvault.

Every error carries a stable machine ``code``. The CLI maps it to an exit code and the
server (later) to an HTTP status through the single table ``ERROR_TABLE`` below, so the
three interfaces never disagree. Each class also subclasses the closest standard exception
so callers that only know the standard library still catch them sensibly.
"""

from __future__ import annotations


class WeightvaultError(Exception):
    """Base of every error weightvault raises on purpose."""

    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class NotFoundError(WeightvaultError, LookupError):
    code = "not_found"


class UploadNotFoundError(NotFoundError):
    """No such upload session (finished, expired, refused, or opened by someone else)."""

    code = "upload_not_found"


class ModelNotFoundError(NotFoundError):
    code = "model_not_found"


class RevisionNotFoundError(NotFoundError):
    code = "revision_not_found"


class InvalidInputError(WeightvaultError, ValueError):
    """The caller asked for something malformed; nothing was changed."""

    code = "invalid_input"


class InvalidNameError(InvalidInputError):
    code = "invalid_name"


class InvalidRevisionError(InvalidInputError):
    code = "invalid_revision"


class UnsafePathError(InvalidInputError):
    """A path from a request, a manifest or a source tree would escape its root."""

    code = "unsafe_path"


class MalformedFileError(InvalidInputError):
    """A file claims a format (safetensors, say) but breaks its rules; it is refused before any write."""

    code = "malformed_file"


class UnsafeFileError(InvalidInputError):
    """A file would run code when loaded (a pickle importing ``os.system``, say); the push refuses it."""

    code = "unsafe_file"


class SourceNotFoundError(InvalidInputError, FileNotFoundError):
    code = "source_not_found"


class AmbiguousRevisionError(InvalidInputError):
    code = "ambiguous_revision"


class ConflictError(WeightvaultError):
    """The request contradicts existing state (label taken, destination differs)."""

    code = "conflict"


class VersionExistsError(ConflictError):
    code = "version_exists"


class NotUploadedError(ConflictError):
    """A commit names a file the vault does not hold (never uploaded, or collected since):
    upload it and commit again."""

    code = "not_uploaded"


class UploadOffsetError(ConflictError):
    """A file upload was sent from an offset the answering server cannot continue from (it
    holds another part of the file, or none): resume from the offset it reports, or from 0,
    which every server process accepts."""

    code = "upload_offset"


class UploadBusyError(ConflictError):
    """The upload session is receiving another request on this server process."""

    code = "upload_busy"


class DestinationConflictError(ConflictError, FileExistsError):
    code = "destination_conflict"


class ObjectExistsError(ConflictError):
    """A conditional write found the object already there."""

    code = "object_exists"


class IntegrityError(WeightvaultError):
    """Stored bytes do not match their hash, or a needed object is missing."""

    code = "integrity_error"


class CorruptObjectError(IntegrityError):
    code = "corrupt_object"


class MissingObjectError(IntegrityError):
    code = "missing_object"


class FormatError(IntegrityError):
    """An object is not in a format this version of weightvault can read."""

    code = "format_error"


class StorageError(WeightvaultError, OSError):
    """The storage layer failed for a reason outside the caller's control."""

    code = "storage_error"


class BackendUnavailableError(StorageError):
    code = "backend_unavailable"


class UploadIncompleteError(BackendUnavailableError):
    """A file upload kept breaking off (or kept being refused) after every retry: push again;
    the server keeps what it stored, so only missing files are sent again."""

    code = "upload_incomplete"


class CredentialsError(StorageError, PermissionError):
    code = "credentials_error"


class DiskFullError(StorageError):
    code = "disk_full"


class ConcurrentModificationError(WeightvaultError):
    """Another process changed what this operation relied on; retrying is safe."""

    code = "concurrent_modification"


class ConfigError(WeightvaultError, ValueError):
    code = "config_error"


class PayloadTooLargeError(InvalidInputError):
    """A request body, header or upload is larger than the server accepts."""

    code = "payload_too_large"


class DigestMismatchError(InvalidInputError):
    """Uploaded bytes do not hash to the id or SHA-256 they were sent under; nothing was stored."""

    code = "digest_mismatch"


class RangeNotSatisfiableError(InvalidInputError):
    code = "range_not_satisfiable"


class AccessDeniedError(WeightvaultError, PermissionError):
    """The caller is known but may not do this (no grant, too narrow a token scope, protected alias)."""

    code = "forbidden"


class AuthenticationError(AccessDeniedError):
    """No credentials, or a token that is unknown, expired or revoked."""

    code = "unauthenticated"


#: code -> (CLI exit code, HTTP status). Subclasses fall back to their nearest listed parent.
ERROR_TABLE: dict[type[WeightvaultError], tuple[int, int]] = {
    WeightvaultError: (1, 500),
    NotFoundError: (3, 404),
    InvalidInputError: (4, 400),
    ConfigError: (4, 400),
    ConflictError: (5, 409),
    IntegrityError: (6, 500),
    StorageError: (7, 503),
    CredentialsError: (7, 401),
    DiskFullError: (8, 507),
    ConcurrentModificationError: (9, 409),
    PayloadTooLargeError: (4, 413),
    RangeNotSatisfiableError: (4, 416),
    AccessDeniedError: (10, 403),
    AuthenticationError: (10, 401),
}


def _lookup(error: WeightvaultError) -> tuple[int, int]:
    for cls in type(error).__mro__:
        if cls in ERROR_TABLE:
            return ERROR_TABLE[cls]
    return ERROR_TABLE[WeightvaultError]


def exit_code_for(error: WeightvaultError) -> int:
    return _lookup(error)[0]


def http_status_for(error: WeightvaultError) -> int:
    return _lookup(error)[1]
