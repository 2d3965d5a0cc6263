"""``cache_fill: auto`` with a store across the network (moto S3 on loopback): a pull fills the
cache even when it places by copy, since the cache then saves a transfer, not just a rebuild."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import servers
import yaml
from targets import Factory, aws_settings

from weightvault.vault.vault import Vault


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _config(tmp_path: Path, moto: servers.ServerProcess, storage_type: str) -> Path:
    cfg: dict[str, Any] = {
        "storage_type": storage_type,
        "link_mode": "copy",
        "aws": aws_settings(
            moto.endpoint,
            uuid.uuid4().hex[:10],
            retry={"attempts": 2, "base_delay": 0.01, "max_delay": 0.05, "deadline": 5},
        ),
    }
    path = tmp_path / f"config-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _model(tmp_path: Path) -> Path:
    import random

    src = tmp_path / "model"
    src.mkdir()
    rng = random.Random(5)
    (src / "weights.bin").write_bytes(rng.randbytes(3 << 20))
    (src / "config.json").write_text('{"hidden_size": 8}')
    return src


def test_s3_primary_placed_by_copy_fills_the_cache(
    tmp_path: Path, s3_factory: Factory, moto: servers.ServerProcess
) -> None:
    s3_factory()  # the bucket
    model = _model(tmp_path)
    with Vault.open(tmp_path / "home", config=_config(tmp_path, moto, "aws")) as v:
        assert v.settings.cache_fill == "auto"
        v.push("m", model)
        first = v.pull("m", tmp_path / "a")
        assert first.placement == {"copy": 2} and first.bytes_from_store == first.bytes_total
        assert v.cache is not None
        assert {e.sha256 for e in v.cache.entries()} == {f.sha256 for f in v.show("m").files}
        again = v.pull("m", tmp_path / "b")
        assert again.bytes_from_cache == again.bytes_total and again.bytes_from_store == 0
    assert _tree(tmp_path / "a") == _tree(tmp_path / "b") == _tree(model)


def test_local_primary_fills_only_when_the_pull_reads_the_cloud_replica(
    tmp_path: Path, s3_factory: Factory, moto: servers.ServerProcess
) -> None:
    s3_factory()
    model = _model(tmp_path)
    with Vault.open(tmp_path / "home", config=_config(tmp_path, moto, "local")) as v:
        assert v.replicas is not None and v.replicas.names == ("local", "aws")
        v.push("m", model)
        local = v.pull("m", tmp_path / "a")  # from the folder on this disk: one write
        assert local.placement == {"written": 2}
        assert v.cache is not None and list(v.cache.entries()) == []
        remote = v.pull("m", tmp_path / "b", provider="aws")  # over the network: cached
        assert remote.placement == {"copy": 2}
        assert {e.sha256 for e in v.cache.entries()} == {f.sha256 for f in v.show("m").files}
    assert _tree(tmp_path / "a") == _tree(tmp_path / "b") == _tree(model)
