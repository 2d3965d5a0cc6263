"""The small object-store protocol every storage backend implements.

A backend is a flat namespace of immutable-or-atomically-replaced objects addressed by
``/``-separated keys. Everything weightvault stores goes through these few calls, so a new
cloud is one new module that passes ``tests/storage/contract.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from weightvault.core.errors import InvalidInputError


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    key: str
    size: int
    mtime: float  # seconds since the epoch, as the backend reports it


@runtime_checkable
class Backend(Protocol):
    """Object storage as weightvault needs it; implementations must be thread-safe."""

    #: A URL that reopens the same store (``file:///…``, ``s3://bucket/prefix``, ``memory://name``).
    url: str

    def put(self, key: str, data: bytes | bytearray | memoryview, *, if_absent: bool = False) -> None:
        """Write an object atomically: readers see the old object, the new one, or none.

        With ``if_absent`` the write fails with ``ObjectExistsError`` when the key exists,
        atomically with respect to other writers (used for immutable labels).
        """
        ...

    def put_file(self, key: str, path: Path, *, consume: bool = False) -> None:
        """Stream a local file into an object (multipart where the backend has it).

        With ``consume`` the backend may take ownership of ``path`` (rename instead of copy);
        the caller must not use the path afterwards.
        """
        ...

    def get(self, key: str) -> bytes:
        """The whole object; ``MissingObjectError`` if absent."""
        ...

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        """``length`` bytes from ``offset``; short only at the end of the object."""
        ...

    def stat(self, key: str) -> ObjectInfo:
        """Size and modification time; ``MissingObjectError`` if absent."""
        ...

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix``, in no particular order."""
        ...

    def delete(self, key: str) -> None:
        """Remove an object; deleting an absent key is not an error."""
        ...

    def close(self) -> None: ...


def check_key(key: str) -> str:
    """Refuse keys that could escape a prefix or mean different things on different stores."""
    if not key or key.startswith("/") or key.endswith("/") or "\\" in key or "\x00" in key:
        raise InvalidInputError(f"invalid object key {key!r}")
    for part in key.split("/"):
        if part in ("", ".", ".."):
            raise InvalidInputError(f"invalid object key {key!r}")
    return key


def split_prefix(prefix: str) -> str:
    """Normalise a store prefix (``/a/b/`` -> ``a/b``) and refuse ones that could escape (``..``)."""
    prefix = prefix.strip("/")
    return check_key(prefix) if prefix else ""


def is_valid_key(key: str) -> bool:
    """Whether a name found in a bucket is one weightvault could have written (not ``dir/``)."""
    try:
        check_key(key)
    except InvalidInputError:
        return False
    return True
