"""In-memory backend for unit tests of the layers above storage (never the only test of one)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

from weightvault.core.errors import MissingObjectError, ObjectExistsError
from weightvault.storage.backend import ObjectInfo, check_key


class MemoryBackend:
    def __init__(self, name: str = "default") -> None:
        self.url = f"memory://{name}"
        self._objects: dict[str, tuple[bytes, float]] = {}
        self._lock = threading.Lock()

    def put(self, key: str, data: bytes | bytearray | memoryview, *, if_absent: bool = False) -> None:
        check_key(key)
        with self._lock:
            if if_absent and key in self._objects:
                raise ObjectExistsError(f"object {key!r} already exists")
            self._objects[key] = (bytes(data), time.time())

    def put_file(self, key: str, path: Path, *, consume: bool = False) -> None:
        self.put(key, Path(path).read_bytes())
        if consume:
            Path(path).unlink(missing_ok=True)

    def get(self, key: str) -> bytes:
        try:
            return self._objects[check_key(key)][0]
        except KeyError:
            raise MissingObjectError(f"object {key!r} not found in {self.url}") from None

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        return self.get(key)[offset : offset + length]

    def stat(self, key: str) -> ObjectInfo:
        data = self.get(key)
        return ObjectInfo(key, len(data), self._objects[key][1])

    def exists(self, key: str) -> bool:
        return check_key(key) in self._objects

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        with self._lock:
            items = [(k, v) for k, v in self._objects.items() if k.startswith(prefix)]
        for key, (data, mtime) in items:
            yield ObjectInfo(key, len(data), mtime)

    def delete(self, key: str) -> None:
        with self._lock:
            self._objects.pop(check_key(key), None)

    def close(self) -> None:
        pass
