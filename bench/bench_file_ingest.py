#!/usr/bin/env python
"""The server's side of a file push alone: ``file_ingest.ingest_file`` on a spooled file of an
encrypted model, with and without the SHA-256 the upload session verified (``verified=``).

Random bytes (default 512 MiB) are spooled once; runs alternate (hashed again, verified) so load
changes hit both alike; each run stores the file into a fresh model (its own keys, so nothing is
deduplicated). Prints wall and CPU seconds (this process) per run, medians, and the load.

    .venv/bin/python bench/bench_file_ingest.py --size 512MiB --runs 3
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import tempfile
import time
from pathlib import Path

from weightvault import Vault
from weightvault.demo.synthetic import format_size, parse_size
from weightvault.vault import file_ingest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="512MiB")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    size = parse_size(args.size)
    with tempfile.TemporaryDirectory(prefix="wv-bench-ingest-") as tmp:
        spool = Path(tmp) / "spool"
        sha = hashlib.sha256()
        with open(spool, "wb") as f:
            left = size
            while left:
                piece = os.urandom(min(8 << 20, left))
                f.write(piece)
                sha.update(piece)
                left -= len(piece)
        home = Path(tmp) / "home"
        home.mkdir()
        (home / "config.yaml").write_text("encryption:\n  enabled: true\n")
        wall: dict[str, list[float]] = {"hashed again": [], "verified": []}
        cpu: dict[str, list[float]] = {"hashed again": [], "verified": []}
        load = os.getloadavg()[0]
        with Vault.open(home) as v:
            for r in range(args.runs):
                for kind in wall:
                    verified = os.stat(spool) if kind == "verified" else None
                    c, t = time.process_time(), time.perf_counter()
                    file_ingest.ingest_file(
                        v, f"bench/m{r}-{len(kind)}", "w.bin", spool, sha.hexdigest(), size, verified=verified
                    )
                    wall[kind].append(time.perf_counter() - t)
                    cpu[kind].append(time.process_time() - c)
    print(f"ingest_file, encrypted, {format_size(size)}, load {load:.1f} -> {os.getloadavg()[0]:.1f}")
    print("| spool | wall s | median | CPU s | median |")
    print("| --- | --- | ---: | --- | ---: |")
    for kind in wall:
        w, c = wall[kind], cpu[kind]
        print(
            f"| {kind} | {' / '.join(f'{x:.2f}' for x in w)} | {statistics.median(w):.2f} "
            f"| {' / '.join(f'{x:.2f}' for x in c)} | {statistics.median(c):.2f} |"
        )


if __name__ == "__main__":
    main()
