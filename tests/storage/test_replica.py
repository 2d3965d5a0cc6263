"""ReplicaSet over real backends: S3 (moto) primary, Azure (Azurite) and local secondaries."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import servers
from targets import FAST_RETRY, Factory, s3_options

from weightvault.core.errors import (
    BackendUnavailableError,
    ConfigError,
    CorruptObjectError,
    MissingObjectError,
    ObjectExistsError,
    StorageError,
)
from weightvault.storage.backend import Backend
from weightvault.storage.factory import open_backend
from weightvault.storage.replica import FailureKind, ReplicaFailure, ReplicaSet

DATA = b"weights " * 1000
DIGEST = hashlib.sha256(DATA).digest()


def verify(data: bytes) -> bool:
    return hashlib.sha256(data).digest() == DIGEST


@pytest.fixture
def replicas(s3_factory: Factory, azure_factory: Factory, local_factory: Factory) -> dict[str, Backend]:
    return {"primary": s3_factory(), "azure": azure_factory(), "local": local_factory()}


@pytest.fixture
def make_set(replicas: dict[str, Backend]) -> Iterator[Callable[..., ReplicaSet]]:
    made: list[ReplicaSet] = []

    def make(**kwargs: Any) -> ReplicaSet:
        rs = ReplicaSet(
            replicas["primary"], {"azure": replicas["azure"], "local": replicas["local"]}, **kwargs
        )
        made.append(rs)
        return rs

    yield make
    for rs in made:
        rs._pool.shutdown()


@pytest.fixture
def dead_backend() -> Backend:
    """An S3 backend whose server is gone: every call fails after the (tiny) retry budget."""
    endpoint = f"http://127.0.0.1:{servers.free_port()}"
    return open_backend("s3://wv-test/dead", **{**s3_options(endpoint), **FAST_RETRY})


def test_write_reaches_every_replica_and_the_set_is_a_backend(
    make_set: Callable[..., ReplicaSet], replicas: dict[str, Backend]
) -> None:
    rs = make_set()
    assert isinstance(rs, Backend)
    result = rs.write("m/chunk", DATA)
    assert result.written == ("primary", "azure", "local") and result.failures == ()
    assert all(b.get("m/chunk") == DATA for b in replicas.values())
    assert {i.key for i in rs.list("m/")} == {"m/chunk"}


def test_read_falls_back_when_the_primary_lacks_the_object(
    make_set: Callable[..., ReplicaSet], replicas: dict[str, Backend]
) -> None:
    seen: list[ReplicaFailure] = []
    rs = make_set(on_failure=seen.append)
    rs.write("m/chunk", DATA)
    replicas["primary"].delete("m/chunk")
    result = rs.read("m/chunk", verify=verify)
    assert (result.data, result.served_by) == (DATA, "azure")
    assert [(f.replica, f.kind) for f in result.failures] == [("primary", FailureKind.MISSING)]
    assert seen == list(result.failures) == rs.drain_failures()
    assert rs.drain_failures() == []
    assert rs.get_range("m/chunk", 8, 7) == DATA[8:15]
    assert rs.stat("m/chunk").size == len(DATA) and rs.exists("m/chunk")


def test_a_corrupt_copy_is_skipped_reported_and_repaired(
    make_set: Callable[..., ReplicaSet], replicas: dict[str, Backend]
) -> None:
    rs = make_set()
    rs.write("m/chunk", DATA)
    replicas["primary"].put("m/chunk", b"bit rot" + DATA[7:])
    replicas["azure"].delete("m/chunk")
    result = rs.read("m/chunk", verify=verify)
    assert (result.data, result.served_by) == (DATA, "local")
    assert [(f.replica, f.kind) for f in result.failures] == [
        ("primary", FailureKind.CORRUPT),
        ("azure", FailureKind.MISSING),
    ]
    assert rs.repair("m/chunk", verify=verify) == ("primary", "azure")
    assert replicas["primary"].get("m/chunk") == DATA and replicas["azure"].get("m/chunk") == DATA
    assert rs.read("m/chunk", verify=verify).served_by == "primary"


def test_preferred_replica_is_tried_first(
    make_set: Callable[..., ReplicaSet], replicas: dict[str, Backend]
) -> None:
    rs = make_set()
    assert rs.read_order("local") == ["local", "primary", "azure"]
    assert rs.read_order() == ["primary", "azure", "local"]
    rs.write("m/chunk", DATA)
    assert rs.read("m/chunk", prefer="local").served_by == "local"
    replicas["local"].delete("m/chunk")
    result = rs.read("m/chunk", prefer="local")
    assert result.served_by == "primary" and result.failures[0].replica == "local"
    with pytest.raises(ConfigError):
        rs.read("m/chunk", prefer="nowhere")


def test_no_good_copy_errors_say_why(
    make_set: Callable[..., ReplicaSet], replicas: dict[str, Backend]
) -> None:
    rs = make_set()
    with pytest.raises(MissingObjectError, match="primary: missing; azure: missing; local: missing"):
        rs.get("m/absent")
    for backend in replicas.values():
        backend.put("m/bad", b"garbage")
    with pytest.raises(CorruptObjectError):
        rs.get("m/bad", verify=verify)
    assert len(rs.drain_failures()) == 6


def test_an_unreachable_replica_is_skipped_and_outranks_missing(
    replicas: dict[str, Backend], dead_backend: Backend
) -> None:
    rs = ReplicaSet(dead_backend, {"azure": replicas["azure"]}, primary_name="s3")
    replicas["azure"].put("m/chunk", DATA)
    result = rs.read("m/chunk")
    assert result.served_by == "azure"
    assert result.failures[0].kind is FailureKind.ERROR and result.failures[0].detail.startswith(
        "s3: get m/chunk"
    )
    with pytest.raises(BackendUnavailableError):
        rs.get("m/absent")  # the dead replica might hold it: not "missing"


def test_write_policies_with_a_dead_secondary(replicas: dict[str, Backend], dead_backend: Backend) -> None:
    strict = ReplicaSet(replicas["primary"], {"gone": dead_backend}, write_policy="all")
    with pytest.raises(StorageError, match="written to primary but not to every replica"):
        strict.write("m/a", DATA)
    assert replicas["primary"].get("m/a") == DATA
    lenient = ReplicaSet(replicas["primary"], {"gone": dead_backend}, write_policy="primary")
    result = lenient.write("m/b", DATA)
    assert result.written == ("primary",) and [f.replica for f in result.failures] == ["gone"]
    assert [f.key for f in lenient.drain_failures()] == ["m/b"]
    with pytest.raises(ConfigError):
        ReplicaSet(replicas["primary"], write_policy="sometimes")


def test_deferred_writes_then_missing_on_and_repair(
    make_set: Callable[..., ReplicaSet], replicas: dict[str, Backend]
) -> None:
    rs = make_set(write_policy="deferred")
    few = [f"few/{i}" for i in range(3)]
    many = [f"many/{i:03d}" for i in range(40)]
    for key in few + many:
        assert rs.write(key, DATA).written == ("primary",)
    assert rs.missing_on("azure", few) == few  # one exists() each
    assert rs.missing_on("azure", many) == many  # one listing
    for key in many[:10]:
        rs.repair(key, ["azure"])
    assert rs.missing_on("azure", many) == many[10:]
    assert rs.missing_on("primary", few + many) == []


def test_if_absent_is_decided_by_the_primary(
    make_set: Callable[..., ReplicaSet], replicas: dict[str, Backend]
) -> None:
    rs = make_set()
    rs.write("labels/v1", b"first", if_absent=True)
    with pytest.raises(ObjectExistsError):
        rs.write("labels/v1", b"second", if_absent=True)
    assert all(b.get("labels/v1") == b"first" for b in replicas.values())


def test_put_file_consumes_only_after_every_replica(
    make_set: Callable[..., ReplicaSet], replicas: dict[str, Backend], tmp_path: Path
) -> None:
    rs = make_set()
    src = tmp_path / "file"
    src.write_bytes(DATA)
    rs.put_file("m/file", src, consume=True)
    assert not src.exists()
    assert all(b.get("m/file") == DATA for b in replicas.values())
