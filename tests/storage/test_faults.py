"""Transient faults are retried, lasting ones end in a clean, provider-named StorageError."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import servers
from faults import FaultProxy
from targets import CloudTarget

from weightvault.core.errors import BackendUnavailableError, MissingObjectError, StorageError

MiB = 1 << 20


@pytest.fixture
def proxy(cloud: CloudTarget) -> Iterator[FaultProxy]:
    proxy = FaultProxy(cloud.server.port)
    yield proxy
    proxy.close()


def _prefix() -> str:
    return uuid.uuid4().hex[:12]


@pytest.mark.parametrize("mode", ["503", "reset"])
def test_transient_failures_are_retried_until_they_pass(
    cloud: CloudTarget, proxy: FaultProxy, mode: str
) -> None:
    prefix = _prefix()
    cloud.open(prefix, create=True)  # the bucket exists before faults start
    backend = cloud.open(prefix, endpoint=proxy.endpoint, retry_attempts=4)
    proxy.fail_next(2, mode)
    backend.put("k", b"value")
    assert proxy.injected == 2
    assert backend.retries == 2  # type: ignore[attr-defined]
    proxy.fail_next(2, mode)
    assert backend.get("k") == b"value"


@pytest.mark.parametrize("mode", ["503", "reset"])
def test_retries_run_out_with_a_clear_error(cloud: CloudTarget, proxy: FaultProxy, mode: str) -> None:
    prefix = _prefix()
    cloud.open(prefix, create=True).put("k", b"value")
    backend = cloud.open(prefix, endpoint=proxy.endpoint, retry_attempts=3)
    proxy.fail_next(100, mode)
    start = time.monotonic()
    with pytest.raises(BackendUnavailableError) as info:
        backend.get("k")
    assert time.monotonic() - start < 10
    message = str(info.value)
    assert message.startswith(f"{cloud.provider}: get k failed after 3 attempt(s)"), message
    assert proxy.injected == 3


def test_permanent_errors_are_not_retried(cloud: CloudTarget, proxy: FaultProxy) -> None:
    prefix = _prefix()
    cloud.open(prefix, create=True)
    backend = cloud.open(prefix, endpoint=proxy.endpoint, retry_attempts=5)
    with pytest.raises(MissingObjectError):
        backend.get("absent")
    assert backend.retries == 0  # type: ignore[attr-defined]


def test_server_dying_mid_upload_fails_cleanly_and_leaves_no_object(
    cloud: CloudTarget, proxy: FaultProxy, tmp_path: Path
) -> None:
    prefix = _prefix()
    direct = cloud.open(prefix, create=True)
    backend = cloud.open(prefix, endpoint=proxy.endpoint)
    src = tmp_path / "big.bin"
    data = bytes(range(256)) * (80 * 1024)  # 20 MiB: several parts or chunks
    src.write_bytes(data)
    proxy.cut_after(7 * MiB)
    start = time.monotonic()
    with pytest.raises(StorageError) as info:
        backend.put_file("big", src)
    assert time.monotonic() - start < 20
    assert str(info.value).startswith(f"{cloud.provider}: ")
    proxy.heal()
    assert not direct.exists("big"), "a failed upload left a (partial) object behind"
    assert list(direct.list()) == []
    backend.put_file("big", src)  # the same backend recovers once the server is back
    assert direct.get("big") == data


@pytest.mark.parametrize("cut_at", [1 * MiB, 6 * MiB], ids=["first-part", "later-part"])
def test_dropped_connections_mid_upload_resume(
    cloud: CloudTarget, proxy: FaultProxy, tmp_path: Path, cut_at: int
) -> None:
    prefix = _prefix()
    direct = cloud.open(prefix, create=True)
    backend = cloud.open(prefix, endpoint=proxy.endpoint, retry_attempts=4)
    src = tmp_path / "big.bin"
    data = bytes(range(251)) * (83 * 1024)  # ~20 MiB, not a multiple of any part size
    src.write_bytes(data)
    proxy.cut_after(cut_at, stay_dead=False)
    backend.put_file("big", src)
    assert backend.retries >= 1  # type: ignore[attr-defined]
    assert direct.get("big") == data


def test_stopped_server_gives_a_clean_error_after_bounded_retries(cloud: CloudTarget) -> None:
    launch = {"s3": servers.moto_server, "gcs": servers.gcs_server, "azure": servers.azurite_server}
    server = launch[cloud.provider]().start()
    try:
        backend = cloud.open(_prefix(), endpoint=server.endpoint, create=True)
        backend.put("k", b"value")
        server.stop()
        calls = {
            "get": lambda: backend.get("k"),
            "put": lambda: backend.put("k2", b"v"),
            "stat": lambda: backend.stat("k"),
            "list": lambda: list(backend.list()),
        }
        for name, call in calls.items():
            start = time.monotonic()
            with pytest.raises(BackendUnavailableError) as info:
                call()
            assert time.monotonic() - start < 10, name
            assert str(info.value).startswith(f"{cloud.provider}: "), info.value
            assert "3 attempt(s)" in str(info.value)
    finally:
        server.close()


def test_s3_streamed_put_dying_midway_leaves_no_object_and_a_retry_resends_it_whole(
    moto: servers.ServerProcess, tmp_path: Path
) -> None:
    """Below the multipart threshold a file is one streamed PutObject: a connection cut inside
    its body is retried from the start of the file (the object is then whole), and a server that
    stays dead leaves no object at all."""
    target = CloudTarget("s3", moto)
    proxy = FaultProxy(moto.port)
    try:
        prefix = _prefix()
        direct = target.open(prefix, create=True)
        src = tmp_path / "pack.bin"
        data = bytes(range(253)) * (77 * 1024)  # ~19 MiB, one request
        src.write_bytes(data)
        flaky = target.open(prefix, endpoint=proxy.endpoint, multipart_threshold=64 * MiB, retry_attempts=4)
        proxy.cut_after(3 * MiB, stay_dead=False)
        flaky.put_file("pack", src)
        assert flaky.retries >= 1  # type: ignore[attr-defined]
        assert direct.get("pack") == data
        dying = target.open(prefix, endpoint=proxy.endpoint, multipart_threshold=64 * MiB)
        proxy.cut_after(5 * MiB)
        with pytest.raises(StorageError):
            dying.put_file("other", src, consume=True)
        proxy.heal()
        assert not direct.exists("other"), "a failed streamed upload left a (partial) object behind"
        assert src.read_bytes() == data  # the source is kept when the upload failed
    finally:
        proxy.close()
        target.close()
