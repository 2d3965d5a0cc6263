"""A primary store plus named secondaries: writes fan out, reads fall back, failures are reported.

``ReplicaSet`` knows keys and bytes only. Whether bytes are right is the caller's call, through a
``verify(data) -> bool`` callback (the vault checks chunk hashes), so this layer never learns
what a manifest is. Every missing, corrupt or unreachable copy it meets is recorded as a
``ReplicaFailure`` (returned with the read, kept in a bounded log and passed to ``on_failure``),
which is what the vault reports and what ``repair``/``missing_on`` act on.

A ReplicaSet is itself a ``Backend`` (put/get/list/... on the set), so layers above can use one
wherever they use a single store; ``read``/``write`` give the detailed results.
"""

from __future__ import annotations

import builtins
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from weightvault.core.errors import (
    BackendUnavailableError,
    ConfigError,
    CorruptObjectError,
    MissingObjectError,
    StorageError,
    WeightvaultError,
)
from weightvault.storage.backend import Backend, ObjectInfo, check_key

Verify = Callable[[bytes], bool]


class WritePolicy(StrEnum):
    ALL = "all"  # every replica must take the write, else StorageError (after writing what it could)
    PRIMARY = "primary"  # the primary must; secondaries are best effort, failures reported for repair
    DEFERRED = "deferred"  # primary only; secondaries are filled later by sync/repair (missing_on)


class FailureKind(StrEnum):
    MISSING = "missing"
    CORRUPT = "corrupt"
    ERROR = "error"  # unreachable, refused, or any other storage failure


@dataclass(frozen=True, slots=True)
class ReplicaFailure:
    replica: str
    key: str
    kind: FailureKind
    detail: str


@dataclass(frozen=True, slots=True)
class ReadResult:
    data: bytes
    served_by: str
    failures: tuple[ReplicaFailure, ...]  # replicas tried before ``served_by``, and why they failed


@dataclass(frozen=True, slots=True)
class WriteResult:
    written: tuple[str, ...]
    failures: tuple[ReplicaFailure, ...]


class ReplicaSet:
    """Replicas in a fixed order: the primary first, then the secondaries as given."""

    def __init__(
        self,
        primary: Backend,
        secondaries: Mapping[str, Backend] | None = None,
        *,
        primary_name: str = "primary",
        write_policy: WritePolicy | str = WritePolicy.ALL,
        on_failure: Callable[[ReplicaFailure], None] | None = None,
        max_parallel: int = 4,
        failure_log_size: int = 1000,
    ) -> None:
        secondaries = dict(secondaries or {})
        if primary_name in secondaries:
            raise ConfigError(f"replica name {primary_name!r} is used twice")
        self.primary_name = primary_name
        self._replicas: dict[str, Backend] = {primary_name: primary, **secondaries}
        try:
            self.write_policy = WritePolicy(write_policy)
        except ValueError:
            raise ConfigError(f"unknown write policy {write_policy!r} (all, primary, deferred)") from None
        self.url = primary.url
        self._on_failure = on_failure
        self._log: deque[ReplicaFailure] = deque(maxlen=failure_log_size)
        self._log_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=max(1, max_parallel), thread_name_prefix="wv-replica")

    # -- introspection ------------------------------------------------------------------------

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._replicas)

    def backend(self, name: str) -> Backend:
        try:
            return self._replicas[name]
        except KeyError:
            raise ConfigError(f"no replica named {name!r} (have {', '.join(self._replicas)})") from None

    def read_order(self, prefer: str | None = None) -> builtins.list[str]:
        """The preferred replica, then the primary, then the others in their given order."""
        order = list(self._replicas)
        if prefer is not None:
            self.backend(prefer)
            order.remove(prefer)
            order.insert(0, prefer)
        return order

    def drain_failures(self) -> builtins.list[ReplicaFailure]:
        """Failures seen since the last call (oldest first), for reports and repair queues."""
        with self._log_lock:
            failures = list(self._log)
            self._log.clear()
        return failures

    def _record(self, failures: Iterable[ReplicaFailure]) -> None:
        failures = list(failures)
        if not failures:
            return
        with self._log_lock:
            self._log.extend(failures)
        if self._on_failure is not None:
            for failure in failures:
                self._on_failure(failure)

    # -- reads --------------------------------------------------------------------------------

    def read(
        self,
        key: str,
        *,
        offset: int | None = None,
        length: int | None = None,
        prefer: str | None = None,
        verify: Verify | None = None,
    ) -> ReadResult:
        """The first good copy in ``read_order(prefer)``; a whole object unless a range is given."""
        check_key(key)
        if (offset is None) != (length is None):
            raise ValueError("give both offset and length, or neither")
        failures: list[ReplicaFailure] = []
        for name in self.read_order(prefer):
            backend = self._replicas[name]
            try:
                if offset is None or length is None:
                    data = backend.get(key)
                else:
                    data = backend.get_range(key, offset, length)
            except MissingObjectError as exc:
                failures.append(ReplicaFailure(name, key, FailureKind.MISSING, str(exc)))
                continue
            except StorageError as exc:
                failures.append(ReplicaFailure(name, key, FailureKind.ERROR, str(exc)))
                continue
            if verify is not None and not verify(data):
                failures.append(ReplicaFailure(name, key, FailureKind.CORRUPT, "bytes failed verification"))
                continue
            self._record(failures)
            return ReadResult(data, name, tuple(failures))
        self._record(failures)
        raise _no_good_copy(key, failures)

    def get(self, key: str, *, prefer: str | None = None, verify: Verify | None = None) -> bytes:
        return self.read(key, prefer=prefer, verify=verify).data

    def get_range(
        self, key: str, offset: int, length: int, *, prefer: str | None = None, verify: Verify | None = None
    ) -> bytes:
        return self.read(key, offset=offset, length=length, prefer=prefer, verify=verify).data

    def stat(self, key: str) -> ObjectInfo:
        return self._first(key, lambda b: b.stat(key))

    def exists(self, key: str) -> bool:
        """Whether any replica has the object (an unreachable one counts as 'not known to')."""
        check_key(key)
        for backend in self._replicas.values():
            try:
                if backend.exists(key):
                    return True
            except StorageError:
                continue
        return False

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """The primary's listing: the primary is the complete copy by construction."""
        return self._replicas[self.primary_name].list(prefix)

    def _first(self, key: str, fn: Callable[[Backend], ObjectInfo]) -> ObjectInfo:
        failures: list[ReplicaFailure] = []
        for name in self.read_order():
            try:
                return fn(self._replicas[name])
            except MissingObjectError as exc:
                failures.append(ReplicaFailure(name, key, FailureKind.MISSING, str(exc)))
            except StorageError as exc:
                failures.append(ReplicaFailure(name, key, FailureKind.ERROR, str(exc)))
        raise _no_good_copy(key, failures)

    # -- writes -------------------------------------------------------------------------------

    def write(
        self, key: str, data: bytes | bytearray | memoryview, *, if_absent: bool = False
    ) -> WriteResult:
        """Primary first (``if_absent`` is decided there), then the secondaries per the policy."""
        check_key(key)
        self._replicas[self.primary_name].put(key, data, if_absent=if_absent)
        # The primary settled any race; secondaries mirror it, so they overwrite.
        return self._fan_out(key, lambda backend: backend.put(key, data))

    def write_file(self, key: str, path: Path) -> WriteResult:
        check_key(key)
        if not Path(path).is_file():
            raise StorageError(f"replica write {key}: source {path} is not a file")
        self._replicas[self.primary_name].put_file(key, path)
        return self._fan_out(key, lambda backend: backend.put_file(key, path))

    def put(self, key: str, data: bytes | bytearray | memoryview, *, if_absent: bool = False) -> None:
        self.write(key, data, if_absent=if_absent)

    def put_file(self, key: str, path: Path, *, consume: bool = False) -> None:
        """Every replica reads the same file, so ``consume`` only removes it once all are done."""
        self.write_file(key, path)
        if consume:
            os.unlink(path)

    def _fan_out(self, key: str, send: Callable[[Backend], None]) -> WriteResult:
        written = [self.primary_name]
        if self.write_policy is WritePolicy.DEFERRED:
            return WriteResult(tuple(written), ())
        names = [n for n in self._replicas if n != self.primary_name]
        futures = {name: self._pool.submit(send, self._replicas[name]) for name in names}
        failures: list[ReplicaFailure] = []
        for name, future in futures.items():
            try:
                future.result()
                written.append(name)
            except WeightvaultError as exc:
                failures.append(ReplicaFailure(name, key, FailureKind.ERROR, str(exc)))
        self._record(failures)
        if failures and self.write_policy is WritePolicy.ALL:
            summary = "; ".join(f"{f.replica}: {f.detail}" for f in failures)
            raise StorageError(
                f"{key} was written to {', '.join(written)} but not to every replica ({summary})"
            )
        return WriteResult(tuple(written), tuple(failures))

    def delete(self, key: str) -> None:
        """Delete everywhere; a replica that cannot be reached is reported and raised after the rest."""
        check_key(key)
        failures: list[ReplicaFailure] = []
        for name, backend in self._replicas.items():
            try:
                backend.delete(key)
            except StorageError as exc:
                failures.append(ReplicaFailure(name, key, FailureKind.ERROR, str(exc)))
        self._record(failures)
        if failures:
            raise StorageError(f"delete {key}: " + "; ".join(f"{f.replica}: {f.detail}" for f in failures))

    # -- sync and repair ----------------------------------------------------------------------

    def missing_on(self, replica: str, keys: Iterable[str]) -> builtins.list[str]:
        """Which of ``keys`` the replica lacks, in the order given (one listing for many keys)."""
        backend = self.backend(replica)
        wanted = [check_key(k) for k in keys]
        if len(wanted) <= 16:
            return [k for k in wanted if not backend.exists(k)]
        common = os.path.commonprefix(wanted)  # noqa: RUF071 - a key prefix, not a path
        present = {info.key for info in backend.list(common)}
        return [k for k in wanted if k not in present]

    def repair(
        self,
        key: str,
        targets: Iterable[str] | None = None,
        *,
        prefer: str | None = None,
        verify: Verify | None = None,
    ) -> tuple[str, ...]:
        """Copy a good copy of ``key`` onto ``targets`` (default: the replicas that failed to serve it).

        Returns the replicas written. Raises like ``read`` when no replica has a good copy.
        """
        result = self.read(key, prefer=prefer, verify=verify)
        names = list(targets) if targets is not None else [f.replica for f in result.failures]
        repaired = []
        for name in names:
            if name == result.served_by:
                continue
            self.backend(name).put(key, result.data)
            repaired.append(name)
        return tuple(repaired)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        for backend in self._replicas.values():
            backend.close()


def _no_good_copy(key: str, failures: list[ReplicaFailure]) -> WeightvaultError:
    """Unreachable beats corrupt beats missing: an unreachable replica may still hold a good copy."""
    summary = "; ".join(f"{f.replica}: {f.kind.value}" for f in failures)
    kinds = {f.kind for f in failures}
    if FailureKind.ERROR in kinds:
        return BackendUnavailableError(f"no replica could serve {key} ({summary})")
    if FailureKind.CORRUPT in kinds:
        return CorruptObjectError(f"every copy of {key} is corrupt or missing ({summary})")
    return MissingObjectError(f"object {key!r} is on no replica ({summary})")
