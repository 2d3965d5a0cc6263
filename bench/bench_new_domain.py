"""Cost of ``keys rotate MODEL --new-domain`` next to a fresh encrypted push of the same data.

Makes a model of ``--size-mib`` MiB (random bytes: incompressible, the worst case), pushes it
encrypted to a local folder store, then moves it to a new domain, and pushes the same folder as
another model for comparison; prints seconds, MiB/s and the peak RSS of the process.

    .venv/bin/python bench/bench_new_domain.py --size-mib 256
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

from weightvault.vault.vault import Vault


def _write(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    block = 8 << 20
    with path.open("wb") as f:
        left = size
        while left:
            piece = os.urandom(min(block, left))
            f.write(piece)
            left -= len(piece)


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256)
    args = parser.parse_args()
    size = args.size_mib << 20
    with tempfile.TemporaryDirectory(prefix="wv-bench-domain-") as tmp:
        root = Path(tmp)
        src = root / "model"
        _write(src / "model-00001-of-00002.safetensors.bin", size * 3 // 4)
        _write(src / "model-00002-of-00002.safetensors.bin", size - size * 3 // 4)
        (src / "config.json").write_text('{"hidden_size": 4096}')
        opts = {"encryption": {"enabled": True}, "cache_enabled": False}
        with Vault.open(root / "home", **opts) as v:
            t = time.perf_counter()
            v.push("m", src, version="v1")
            first = time.perf_counter() - t
            rss_push = _rss_mib()
            t = time.perf_counter()
            report = v.rotate_domain("m")
            rotate = time.perf_counter() - t
            rss_rotate = _rss_mib()
            t = time.perf_counter()
            v.push("fresh", src, version="v1")
            fresh = time.perf_counter() - t
        mib = size / (1 << 20)
        print(f"model: {mib:.0f} MiB, random bytes, {os.cpu_count()} cores, local folder store")
        line = f"first encrypted push   {first:7.2f} s  {mib / first:7.1f} MiB/s"
        print(f"{line}  (peak RSS {rss_push:.0f} MiB)")
        print(
            f"rotate --new-domain    {rotate:7.2f} s  {mib / rotate:7.1f} MiB/s  "
            f"(peak RSS {rss_rotate:.0f} MiB; {report.chunks_written} chunks, {report.packs_written} packs)"
        )
        print(f"fresh push, same data  {fresh:7.2f} s  {mib / fresh:7.1f} MiB/s")
        print(f"rotation / fresh push  {rotate / fresh:7.2f}x")


if __name__ == "__main__":
    main()
