#!/usr/bin/env python
"""Encrypted push through the server vs embedded encrypted push, in the same run.

A synthetic checkpoint (default 1 GiB, ``weightvault.demo.synthetic``) is pushed, for each run,
into a fresh home with ``encryption.enabled`` (and the ``--compression`` asked for):

* embedded: ``Vault.push`` on that home (keyed chunking, compression, sealing on this machine);
* remote: ``RemoteVault.push`` to ``weightvault serve`` running on such a home. The client hashes
  every file and streams it whole to an upload session; the server spools it, checks its
  SHA-256, and runs the embedded push pipeline on it, then commits.

Runs alternate (embedded, remote, embedded, …) so load changes hit both alike; each time is the
push call alone (server start-up excluded). Prints medians, the ratio, and the 1-minute load
average before and after, and writes ``OUT/last_server_push.json``.

    .venv/bin/python bench/bench_server_push.py                  # 1 GiB, 3 runs
    .venv/bin/python bench/bench_server_push.py --size 256MiB --runs 1

``--baseline-src DIR`` also runs, in the same alternation, a server whose ``weightvault`` package
comes from ``DIR`` (e.g. ``git archive <commit> src | tar -x -C /tmp/base`` then
``--baseline-src /tmp/base/src``): a before/after of a server change under the same load.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from weightvault import Vault
from weightvault.demo.synthetic import format_size, generate_model, parse_size
from weightvault.testing.server import ServerProcess

HERE = Path(__file__).resolve().parent
MODEL = "bench/sealed"


def _home(path: Path, compression: str) -> Path:
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(f"encryption:\n  enabled: true\ncompression: {compression}\n")
    return path


def _remote(home: Path, src: Path, total: int, env: dict[str, str]) -> float:
    with Vault.open(home) as v:
        token = v.access.create_token("bench", "admin", admin=True).token
    with ServerProcess(home, env=env) as server, Vault.open(server.url, token=token) as rv:
        t = time.perf_counter()
        result = rv.push(MODEL, src, version="v1")
        took = time.perf_counter() - t
        assert result.bytes_written == total  # every file travelled once
    with Vault.open(home) as v:  # the server sealed it: the store has the model's keyring
        assert v.keys.domain(MODEL) is not None
    return took


def bench(size: int, runs: int, compression: str, work: Path, baseline: Path | None = None) -> dict[str, Any]:
    src = work / "model"
    generate_model(src, size)
    total = sum(p.stat().st_size for p in src.rglob("*") if p.is_file())
    embedded: list[float] = []
    remote: list[float] = []
    base: list[float] = []
    load_before = os.getloadavg()[0]
    for r in range(runs):
        home = _home(work / f"embedded-{r}", compression)
        with Vault.open(home) as v:
            t = time.perf_counter()
            v.push(MODEL, src, version="v1")
            embedded.append(time.perf_counter() - t)
        shutil.rmtree(home)

        if baseline is not None:
            home = _home(work / f"baseline-{r}", compression)
            base.append(_remote(home, src, total, {"PYTHONPATH": str(baseline)}))
            shutil.rmtree(home)
        home = _home(work / f"remote-{r}", compression)
        remote.append(_remote(home, src, total, {}))
        shutil.rmtree(home)
    out: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": os.cpu_count(),
        "size": total,
        "compression": compression,
        "load_1min_before": load_before,
        "load_1min_after": os.getloadavg()[0],
        "embedded_seconds": embedded,
        "remote_seconds": remote,
        "embedded_mb_per_s": total / statistics.median(embedded) / 1e6,
        "remote_mb_per_s": total / statistics.median(remote) / 1e6,
    }
    if base:
        out["baseline_src"] = str(baseline)
        out["baseline_seconds"] = base
        out["baseline_mb_per_s"] = total / statistics.median(base) / 1e6
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="1GiB")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--compression", choices=["none", "zstd", "float"], default="none")
    ap.add_argument("--out", type=Path, default=HERE / "out")
    ap.add_argument("--baseline-src", type=Path, help="also time a server running this src tree")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="wv-bench-push-") as tmp:
        res = bench(parse_size(args.size), args.runs, args.compression, Path(tmp), args.baseline_src)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "last_server_push.json").write_text(json.dumps(res, indent=2))
    med_e, med_r = statistics.median(res["embedded_seconds"]), statistics.median(res["remote_seconds"])
    print(
        f"encrypted push, {format_size(res['size'])}, compression {res['compression']}, {res['cpus']} CPUs, "
        f"{res['date']}, load {res['load_1min_before']:.1f} -> {res['load_1min_after']:.1f}"
    )
    print("| push | runs s | median s | MB/s |")
    print("| --- | --- | ---: | ---: |")
    rows = [
        ("embedded", res["embedded_seconds"], res["embedded_mb_per_s"]),
        ("remote (server)", res["remote_seconds"], res["remote_mb_per_s"]),
    ]
    if "baseline_seconds" in res:
        rows.append(("remote (baseline server)", res["baseline_seconds"], res["baseline_mb_per_s"]))
    for name, secs, mbs in rows:
        runs = " / ".join(f"{s:.1f}" for s in secs)
        print(f"| {name} | {runs} | {statistics.median(secs):.2f} | {mbs:.0f} |")
    print(f"remote / embedded throughput: {med_e / med_r:.2f}")
    if "baseline_seconds" in res:
        med_b = statistics.median(res["baseline_seconds"])
        print(f"baseline remote / embedded throughput: {med_e / med_b:.2f}")
        print(f"remote vs baseline server: {med_b / med_r:.2f}x faster")


if __name__ == "__main__":
    main()
