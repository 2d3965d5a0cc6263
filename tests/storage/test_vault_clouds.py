"""The vault over real cloud protocol servers: the seed's config shape, replication to every
cloud, fallback reads, repair, a server dying mid-push, an unreachable secondary, recovery
from a single bucket."""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import servers
import yaml
from faults import FaultProxy
from targets import BUCKET, Factory, aws_settings

from weightvault.core import layout
from weightvault.core.errors import StorageError
from weightvault.storage.factory import open_backend
from weightvault.testing.safetensors import safetensors_prefix
from weightvault.vault.vault import Vault

RETRY = {"attempts": 2, "base_delay": 0.01, "max_delay": 0.05, "deadline": 5}


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def model(tmp_path: Path) -> Path:
    import random

    src = tmp_path / "model"
    src.mkdir()
    rng = random.Random(11)
    head = safetensors_prefix(9 << 20)
    (src / "model.safetensors").write_bytes(head + rng.randbytes((9 << 20) - len(head)))
    (src / "config.json").write_text('{"hidden_size": 8}')
    return src


@pytest.fixture
def clouds(
    s3_factory: Factory,
    gcs_factory: Factory,
    azure_factory: Factory,
    moto: servers.ServerProcess,
    gcs_emulator: servers.ServerProcess,
    azurite: servers.ServerProcess,
) -> Iterator[dict[str, Any]]:
    """Seed-shaped sections for the three emulators, each in a fresh prefix of an existing bucket."""
    for factory in (s3_factory, gcs_factory, azure_factory):
        factory()  # creates the bucket/container once
    prefix = uuid.uuid4().hex[:10]
    yield {
        "aws": aws_settings(moto.endpoint, prefix, retry=RETRY),
        "gcp": {
            "enabled": True,
            "project_id": "test",
            "endpoint_url": gcs_emulator.endpoint,
            "retry": RETRY,
            "model_weights": {"gcs_bucket": BUCKET, "prefix": prefix},
        },
        "azure": {
            "enabled": True,
            "connection_string": servers.azurite_connection_string(azurite.endpoint),
            "retry": RETRY,
            "model_weights": {"container": BUCKET, "prefix": prefix},
        },
    }


def _config(tmp_path: Path, sections: dict[str, Any], **model_weights: Any) -> Path:
    cfg = {
        "model_weights": {
            "storage_type": "aws",
            "sync_enabled": True,
            "checksum_algorithm": "sha256",
            "cache_enabled": False,
            "pack_size_mb": 2,
            **model_weights,
        },
        **sections,
    }
    path = tmp_path / f"config-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_push_to_s3_replicates_to_gcs_and_azure_then_falls_back_and_repairs(
    tmp_path: Path, clouds: dict[str, Any], model: Path
) -> None:
    with Vault.open(tmp_path / "home", config=_config(tmp_path, clouds)) as v:
        assert v.replicas is not None and v.replicas.names == ("aws", "gcp", "azure")
        result = v.push("org/llama", model, version="v1.0.0")
        assert result.replication == {"gcp": "ok", "azure": "ok"}
        assert v.replica_status("org/llama@v1.0.0") == {"aws": True, "gcp": True, "azure": True}
        # lose a pack on GCS: a pull that prefers GCS still succeeds, from another cloud, and says so
        gcs = v.replicas.backend("gcp")
        pack = next(i.key for i in gcs.list(layout.PACKS))
        gcs.delete(pack)
        pulled = v.pull("org/llama@v1.0.0", tmp_path / "out", provider="gcp")
        assert _files(tmp_path / "out") == _files(model)
        assert any(f.startswith(f"gcp: {pack} missing") for f in pulled.fallbacks), pulled.fallbacks
        assert v.replica_status("org/llama@v1.0.0")["gcp"] is False
        report = v.repair()
        assert f"gcp:{pack}" in report.repaired and report.ok
        assert v.replica_status("org/llama@v1.0.0")["gcp"] is True


def test_s3_dying_mid_push_leaves_nothing_visible_and_the_next_push_completes(
    tmp_path: Path, clouds: dict[str, Any], model: Path, moto: servers.ServerProcess
) -> None:
    proxy = FaultProxy(moto.port)
    try:
        sections = {"aws": {**clouds["aws"], "endpoint_url": proxy.endpoint}}
        # 1 MiB packs (5 packs of 0.5-3.5 MiB for this model): up to 3 are uploaded at once, so
        # the server dies after 8 of the packs' 9 MiB, when the first ones are surely whole
        cfg = _config(tmp_path, sections, sync_enabled=False, pack_size_mb=1)
        proxy.cut_after(8 << 20)  # the "server" goes away mid-push
        with Vault.open(tmp_path / "home", config=cfg) as v:
            with pytest.raises(StorageError):
                v.push("m", model, version="v1")
            assert v.list_models() == []
            s3 = open_backend(
                f"s3://{BUCKET}/{clouds['aws']['model_weights']['prefix']}",
                endpoint_url=moto.endpoint,
                region="us-east-1",
                access_key_id="test",
                secret_access_key="test",
            )
            assert not list(s3.list(layout.REFS)) and not list(s3.list(layout.MANIFESTS))
            proxy.heal()
            result = v.push("m", model, version="v1")
            assert result.bytes_written < sum(len(b) for b in _files(model).values())  # resumed
            v.pull("m@v1", tmp_path / "out")
            assert v.verify(read_data=True).ok
        assert _files(tmp_path / "out") == _files(model)
    finally:
        proxy.close()


def test_unreachable_secondary_does_not_block_background_replication(
    tmp_path: Path, clouds: dict[str, Any], model: Path, azurite: servers.ServerProcess
) -> None:
    proxy = FaultProxy(azurite.port)
    try:
        azure = {**clouds["azure"], "connection_string": servers.azurite_connection_string(proxy.endpoint)}
        sections = {"aws": clouds["aws"], "azure": azure}
        proxy.kill()  # Azure is down for the whole push
        with Vault.open(tmp_path / "home", config=_config(tmp_path, sections, replication="background")) as v:
            started = time.monotonic()
            result = v.push("m", model, version="v1")
            assert result.replication == {"azure": "background"}
            assert time.monotonic() - started < 30
            assert v.replica_status("m@v1")["aws"] is True
            for t in list(v._background):
                t.join(60)
            assert v.replica_status("m@v1")["azure"] is not True
            proxy.heal()
            report = v.sync()
            assert report.ok and report.copied["azure"] > 0
            assert v.replica_status("m@v1") == {"aws": True, "azure": True}
            assert v.sync().copied["azure"] == 0  # idempotent
    finally:
        proxy.close()


def test_recover_from_a_single_bucket_on_a_fresh_machine(
    tmp_path: Path, clouds: dict[str, Any], model: Path
) -> None:
    with Vault.open(tmp_path / "home", config=_config(tmp_path, clouds)) as v:
        v.push("m", model, version="v1", metadata={"run": "42"})
        v.set_alias("m", "production", "v1")
        commit = v.resolve("m@v1").commit
    # a fresh machine with only the Azure container: the GCS/S3 copies are not consulted
    az = {"azure": clouds["azure"]}
    with Vault.open(
        tmp_path / "fresh", config=_config(tmp_path, az, storage_type="azure", sync_enabled=False)
    ) as v:
        assert [m.name for m in v.list_models()] == ["m"]  # seen from the container's refs, no recover
        counts = v.recover()
        assert counts["versions"] == 1 and counts["aliases"] == 1
        assert v.resolve("m@production").commit == commit
        v.pull("m@production", tmp_path / "out")
    assert _files(tmp_path / "out") == _files(model)


def test_missing_credentials_name_the_provider(
    tmp_path: Path, clouds: dict[str, Any], model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    aws = {k: v for k, v in clouds["aws"].items() if k not in ("access_key_id", "secret_access_key")}
    cfg = _config(tmp_path, {"aws": aws}, sync_enabled=False)
    with (
        pytest.raises(StorageError, match=r"(?i)s3|aws") as exc,
        Vault.open(tmp_path / "home", config=cfg) as v,
    ):
        v.push("m", model)
    assert "credential" in str(exc.value).lower()


def test_concurrent_pushes_of_the_same_label_to_s3_one_wins(
    tmp_path: Path, clouds: dict[str, Any], model: Path
) -> None:
    cfg = _config(tmp_path, {"aws": clouds["aws"]}, sync_enabled=False)
    outcomes: list[str] = []

    def push(i: int) -> None:
        with Vault.open(tmp_path / f"home{i}", config=cfg) as v:  # two machines, one bucket
            try:
                v.push("m", model, version="v1")
                outcomes.append("ok")
            except Exception as exc:
                outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=push, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(outcomes) == ["VersionExistsError", "ok"]
    shutil.rmtree(tmp_path / "home0", ignore_errors=True)


def test_s3_push_dying_with_packs_in_flight_leaves_no_version_and_no_staged_pack(
    tmp_path: Path, s3_factory: Factory, model: Path, moto: servers.ServerProcess
) -> None:
    """Packs go to S3 several at a time, each as one streamed request: a server dying after some
    of them are stored leaves no version, manifest or ref, and no staged pack file behind; the
    next push sends only what is missing and the result reads back exactly."""
    s3_factory()  # the bucket exists
    prefix = uuid.uuid4().hex[:10]
    proxy = FaultProxy(moto.port)
    try:
        aws = aws_settings(proxy.endpoint, prefix, retry=RETRY)
        cfg = _config(tmp_path, {"aws": aws}, sync_enabled=False, pack_size_mb=1)
        s3 = open_backend(
            f"s3://{BUCKET}/{prefix}",
            endpoint_url=moto.endpoint,
            region="us-east-1",
            access_key_id="test",
            secret_access_key="test",
        )
        home = tmp_path / "home"
        proxy.cut_after(8 << 20)  # 5 packs of 0.5-3.5 MiB, up to 3 in flight: some land, then it dies
        with Vault.open(home, config=cfg) as v:
            with pytest.raises(StorageError):
                v.push("m", model, version="v1")
            assert v.list_models() == []
            assert not list(s3.list(layout.REFS)) and not list(s3.list(layout.MANIFESTS))
            staged = [p for p in (home / "tmp").rglob("*") if p.is_file()] if (home / "tmp").exists() else []
            assert staged == []
            proxy.heal()
            result = v.push("m", model, version="v1")
            assert result.bytes_written < sum(len(b) for b in _files(model).values())  # resumed
            v.pull("m@v1", tmp_path / "out")
            assert v.verify(read_data=True).ok
        assert _files(tmp_path / "out") == _files(model)
        s3.close()
    finally:
        proxy.close()
