"""Two homes (machines) on one S3 bucket (moto): each sees the other's pushes, alias moves and
deletes without ``recover``; gc on either, looping during deduplicating pushes, loses nothing."""

from __future__ import annotations

import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import servers
import yaml
from targets import Factory, aws_settings

from weightvault.core import layout
from weightvault.vault.vault import Vault

sys.path.insert(0, str(Path(__file__).parents[1] / "vault"))
from gc_workload import gc_loop, push_loop


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _homes(tmp_path: Path, moto: servers.ServerProcess, s3_factory: Factory, n: int) -> list[Vault]:
    s3_factory()  # creates the bucket
    prefix = uuid.uuid4().hex[:10]
    vaults = []
    for i in range(n):
        cfg = {
            "model_weights": {"storage_type": "aws", "cache_enabled": False, "pack_size_mb": 1},
            "aws": aws_settings(moto.endpoint, prefix),
        }
        path = tmp_path / f"config-{i}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        vaults.append(Vault.open(tmp_path / f"home-{i}", config=path))
    return vaults


def test_two_homes_on_one_bucket_see_each_other(
    tmp_path: Path, moto: servers.ServerProcess, s3_factory: Factory
) -> None:
    import random

    src = tmp_path / "src"
    src.mkdir()
    (src / "model-00001-of-00001.bin").write_bytes(random.Random(1).randbytes(3 << 20))
    a, b = _homes(tmp_path, moto, s3_factory, 2)
    try:
        a.push("team/m", src, version="v1")
        assert [v.label for v in b.list_versions("team/m")] == ["v1"]
        b.pull("team/m@v1", tmp_path / "out")
        assert _files(tmp_path / "out") == _files(src)
        b.set_alias("team/m", "prod", "v1")
        assert a.resolve("team/m@prod").label == "v1"
        b.delete("team/m@v1")
        assert a.list_models() == []
        # B's gc with no grace reclaims what A pushed, now that nobody references it
        assert b.gc(grace_seconds=0).packs_deleted >= 1
        assert not list(a.primary.list(layout.PACKS))
    finally:
        a.close()
        b.close()


def test_gc_loops_during_deduplicating_pushes_from_two_homes_on_one_bucket(
    tmp_path: Path, moto: servers.ServerProcess, s3_factory: Factory
) -> None:
    pusher, collector = _homes(tmp_path, moto, s3_factory, 2)
    stop = threading.Event()
    out: dict[str, Any] = {}

    def collect() -> None:
        try:
            out["gc"] = gc_loop(collector, stop.is_set)
        except BaseException as exc:
            out["gc"] = exc

    thread = threading.Thread(target=collect)
    thread.start()
    try:
        labels = push_loop(pusher, tmp_path, 5, "s3")
    finally:
        stop.set()
        thread.join(600)
    try:
        assert not isinstance(out["gc"], BaseException), out["gc"]
        assert out["gc"][0] >= 1
        assert labels == [f"v{i}" for i in range(5)]
        assert collector.verify(read_data=True).ok
        assert [v.label for v in collector.list_versions("m-s3")] == ["v4"]
        collector.gc(grace_seconds=0)
        assert pusher.verify(read_data=True).ok
    finally:
        pusher.close()
        collector.close()
