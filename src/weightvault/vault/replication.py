"""Keeping secondaries up to date: replicate a version, sync everything, report and repair.

Replication only ever adds or refreshes objects on a secondary; deletions reach secondaries
through ``rm`` and ``gc`` themselves. So a damaged or emptied primary can never make sync
destroy the good copies elsewhere.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from weightvault.core import layout
from weightvault.core.errors import MissingObjectError, StorageError, WeightvaultError
from weightvault.storage.backend import Backend, ObjectInfo
from weightvault.storage.replica import ReplicaSet

if TYPE_CHECKING:
    from weightvault.vault.records import Records

COPY_PIECE = 8 << 20
SYNC_PARALLEL = 4
SYNC_PREFIXES = (layout.PACKS, layout.INDEX, layout.RECIPES, layout.MANIFESTS, layout.REFS)


@dataclass(slots=True)
class SyncReport:
    copied: dict[str, int] = field(default_factory=dict)  # replica -> objects copied
    bytes_copied: dict[str, int] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not any(self.errors.values())

    def to_json(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "copied": self.copied,
            "bytes_copied": self.bytes_copied,
            "errors": self.errors,
        }


def copy_object(src: Backend, dst: Backend, key: str, size: int | None = None) -> int:
    """Copy one object with bounded memory: small ones in one piece, packs through a temp file."""
    if size is None:
        size = src.stat(key).size
    if size <= COPY_PIECE:
        data = src.get(key)
        dst.put(key, data)
        return len(data)
    fd, tmp = tempfile.mkstemp(prefix="wv-copy-")
    try:
        with os.fdopen(fd, "wb") as f:
            for off in range(0, size, COPY_PIECE):
                f.write(src.get_range(key, off, min(COPY_PIECE, size - off)))
        dst.put_file(key, Path(tmp), consume=True)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return size


def replicate(
    vault: Records, replicas: ReplicaSet, keys: list[str], names: Iterable[str] | None = None
) -> dict[str, str]:
    """Copy the missing ``keys`` (in order) from the primary to each secondary: name -> "ok" or error."""
    primary = replicas.backend(replicas.primary_name)
    targets = list(names) if names is not None else [n for n in replicas.names if n != replicas.primary_name]

    def one(name: str) -> str:
        dst = replicas.backend(name)
        try:
            missing: set[str] = set(replicas.missing_on(name, keys))
            for key in keys:
                if key in missing or key.startswith(layout.REFS):
                    copy_object(primary, dst, key)
            return "ok"
        except WeightvaultError as exc:
            return f"error: {exc}"

    with ThreadPoolExecutor(max(1, len(targets))) as pool:
        return dict(zip(targets, pool.map(one, targets), strict=True))


def sync(vault: Records, replicas: ReplicaSet, progress: Callable[[int], None] | None = None) -> SyncReport:
    """Bring every secondary up to date with the primary; idempotent and resumable per object."""
    report = SyncReport()
    primary = replicas.backend(replicas.primary_name)
    tick = progress or (lambda n: None)
    for name in replicas.names:
        if name == replicas.primary_name:
            continue
        dst = replicas.backend(name)
        copied = nbytes = 0
        errors: list[str] = []
        try:
            if not dst.exists(layout.CONFIG_KEY):
                copy_object(primary, dst, layout.CONFIG_KEY)
            for prefix in SYNC_PREFIXES:
                have = {i.key: i.size for i in dst.list(prefix)}
                wanted = list(primary.list(prefix))
                # data before the names that make it visible: prefixes in order, objects of one
                # prefix several at a time (each copy is bounded in memory, see copy_object)
                todo = [
                    info
                    for info in wanted
                    if info.key not in have
                    or have[info.key] != info.size
                    or (prefix == layout.REFS and dst.get(info.key) != primary.get(info.key))
                ]

                def copy(info: ObjectInfo, dst: Backend = dst) -> int:
                    try:
                        n = copy_object(primary, dst, info.key, info.size)
                    except MissingObjectError:
                        return -1  # deleted on the primary meanwhile (gc): nothing to copy
                    tick(info.size)
                    return n

                with ThreadPoolExecutor(SYNC_PARALLEL, thread_name_prefix="wv-sync") as pool:
                    for n in pool.map(copy, todo):
                        if n >= 0:
                            nbytes += n
                            copied += 1
        except StorageError as exc:
            errors.append(str(exc))
        report.copied[name] = copied
        report.bytes_copied[name] = nbytes
        report.errors[name] = errors
    return report


@dataclass(slots=True)
class RepairReport:
    checked: int = 0
    repaired: list[str] = field(default_factory=list)  # "replica:key"
    unrecoverable: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.unrecoverable

    def to_json(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "checked": self.checked,
            "repaired": self.repaired,
            "unrecoverable": self.unrecoverable,
        }


def repair(
    vault: Records, replicas: ReplicaSet, progress: Callable[[int], None] | None = None
) -> RepairReport:
    """Read every object of every live version on every replica; rewrite bad or missing copies."""
    report = RepairReport()
    tick = progress or (lambda n: None)
    keys: list[str] = []
    seen: set[str] = set()
    for model in vault.index.list_model_names():
        for rec in vault.index.list_versions(model):
            for key in vault.version_keys(rec):
                if key not in seen:
                    seen.add(key)
                    keys.append(key)
    for key in keys:
        report.checked += 1
        good: bytes | None = None
        bad: list[str] = []
        for name in replicas.read_order():
            try:
                data = replicas.backend(name).get(key)
            except (MissingObjectError, StorageError):
                bad.append(name)
                continue
            if vault.object_ok(key, data):
                if good is None:
                    good = data
            else:
                bad.append(name)
        if good is None:
            report.unrecoverable.append(key)
            continue
        for name in bad:
            try:
                replicas.backend(name).put(key, good)
                report.repaired.append(f"{name}:{key}")
            except StorageError as exc:
                report.unrecoverable.append(f"{name}:{key}: {exc}")
        tick(len(good))
    return report
