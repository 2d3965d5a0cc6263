#!/usr/bin/env python
"""Warm pulls by clone, hardlink and copy, and a pull across filesystems (issue 12).

Generates the synthetic checkpoint (default 1 GiB: 4 bf16 shards plus small files), makes an
XFS filesystem with reflink in a loop-mounted image (``weightvault.testing.loopfs``; needs
root and mkfs.xfs), and pushes the model into two homes: one on the machine's own disk (ext4
here) and one on the XFS image. After one untimed cold pull fills each cache, it measures
warm pulls (SDK, in-process: the placement cost, no CLI start-up) into fresh folders:

* XFS: ``reflink``, ``hardlink``, ``copy``; ext4: ``hardlink``, ``copy`` (``auto`` there);
* ext4 cache -> XFS destination with ``auto`` (cross-filesystem: copies);
* the reference ``cp -r`` of the model folder on the same filesystem.

Each sample: ``sync`` (untimed), the pull (timed), then ``sync`` timed on its own (``+sync``:
dirty pages a copy leaves behind), the free-space drop of the destination filesystem, then
the folder is removed. Cases are interleaved run by run so that load on a shared machine
spreads over all of them; medians over ``--runs``.

    sudo .venv/bin/python bench/bench_link.py                 # 1 GiB, 5 runs
    sudo .venv/bin/python bench/bench_link.py --size 2GiB --runs 3

Prints a markdown table and writes it to ``OUT/last_link.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
try:
    from weightvault.demo.synthetic import format_size, generate_model, parse_size
except ImportError:  # running from a checkout without the package installed
    sys.path.insert(0, str(HERE.parent / "src"))
    from weightvault.demo.synthetic import format_size, generate_model, parse_size
from weightvault.testing.loopfs import xfs_mount  # noqa: E402
from weightvault.vault.vault import Vault  # noqa: E402

MODEL = "bench/synthetic"


@dataclass
class Case:
    name: str
    fs: str
    run: Callable[[Path], str]  # places the model at the given new folder; returns how
    dest_root: Path
    seconds: list[float] = field(default_factory=list)
    sync_seconds: list[float] = field(default_factory=list)
    space: list[int] = field(default_factory=list)
    placed: str = ""


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def sample(case: Case, i: int) -> None:
    dest = case.dest_root / f"{case.name.replace(' ', '-')}-{i}"
    subprocess.run(["sync"], check=True)
    before = free_bytes(case.dest_root)
    t0 = time.perf_counter()
    case.placed = case.run(dest)
    t1 = time.perf_counter()
    subprocess.run(["sync"], check=True)
    t2 = time.perf_counter()
    case.space.append(before - free_bytes(case.dest_root))
    case.seconds.append(t1 - t0)
    case.sync_seconds.append(t2 - t1)
    shutil.rmtree(dest)
    subprocess.run(["sync"], check=True)


def puller(vault: Vault, mode: str) -> Callable[[Path], str]:
    def run(dest: Path) -> str:
        result = vault.pull(MODEL, dest, link_mode=mode)
        assert result.bytes_from_cache == result.bytes_total, "the cache was not warm"
        return ", ".join(f"{n} {how}" for how, n in sorted(result.placement.items()))

    return run


def cp_r(src: Path) -> Callable[[Path], str]:
    def run(dest: Path) -> str:
        subprocess.run(["cp", "-r", str(src), str(dest)], check=True)
        return "cp -r"

    return run


def fmt(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} ({min(values):.3f}..{max(values):.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", default="1GiB", help="weight bytes of the synthetic model (default 1GiB)")
    parser.add_argument("--runs", type=int, default=5, help="runs per case; medians are reported")
    parser.add_argument(
        "--out", type=Path, default=HERE / "out" / "link", help="work folder (default bench/out/link)"
    )
    args = parser.parse_args()
    size = parse_size(args.size)
    work: Path = args.out
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    src = work / "model"
    generate_model(src, size)
    model_bytes = sum(p.stat().st_size for p in src.rglob("*") if p.is_file())
    ext4_home, ext4_dest = work / "home", work / "pulls"
    ext4_dest.mkdir()
    load_before = os.getloadavg()
    started = dt.datetime.now(dt.UTC)

    image_mb = (5 * model_bytes >> 20) + 1024  # store + cache + one copy + one cross copy + room
    with xfs_mount(work / "xfs-image", image_mb) as xfs:
        xfs_home, xfs_dest = xfs / "home", xfs / "pulls"
        xfs_dest.mkdir()
        with Vault.open(ext4_home) as on_ext4, Vault.open(xfs_home) as on_xfs:
            for v, scratch in ((on_ext4, ext4_dest), (on_xfs, xfs_dest)):
                v.push(MODEL, src)
                v.pull(MODEL, scratch / "cold")  # fills the cache, untimed
                shutil.rmtree(scratch / "cold")
            fs_ext4 = subprocess.run(
                ["findmnt", "-no", "FSTYPE", "-T", str(work)], capture_output=True, text=True
            ).stdout.strip()
            cases = [
                Case("cp -r (reference)", "xfs", cp_r(src), xfs_dest),
                Case("warm pull, reflink", "xfs", puller(on_xfs, "reflink"), xfs_dest),
                Case("warm pull, hardlink", "xfs", puller(on_xfs, "hardlink"), xfs_dest),
                Case("warm pull, copy", "xfs", puller(on_xfs, "copy"), xfs_dest),
                Case("cp -r (reference)", fs_ext4, cp_r(src), ext4_dest),
                Case("warm pull, hardlink", fs_ext4, puller(on_ext4, "hardlink"), ext4_dest),
                Case("warm pull, auto (copy)", fs_ext4, puller(on_ext4, "auto"), ext4_dest),
                Case(f"{fs_ext4} cache -> xfs, auto", "cross", puller(on_ext4, "auto"), xfs_dest),
            ]
            for i in range(args.runs):
                for case in cases:
                    sample(case, i)
    load_after = os.getloadavg()

    refs = {c.fs: c for c in cases if c.name.startswith("cp -r")}
    lines = [
        f"warm pulls of a {format_size(model_bytes)} model ({len(list(src.iterdir()))} files), "
        f"{args.runs} runs, {started:%Y-%m-%d %H:%M} UTC, load {load_before[0]:.2f} -> {load_after[0]:.2f}",
        "",
        "| case | filesystem | placed | pull s, median (min..max) | +sync s | durable vs cp -r+sync "
        "| space used |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for c in cases:
        ref = refs.get(c.fs if c.fs != "cross" else "xfs")
        durable = statistics.median([a + b for a, b in zip(c.seconds, c.sync_seconds, strict=True)])
        ratio = ""
        if ref is not None:
            ref_durable = statistics.median(
                [a + b for a, b in zip(ref.seconds, ref.sync_seconds, strict=True)]
            )
            ratio = f"{durable / ref_durable:.3f}x"
        lines.append(
            f"| {c.name} | {c.fs} | {c.placed} | {fmt(c.seconds)} | {statistics.median(c.sync_seconds):.3f} "
            f"| {ratio} | {format_size(max(0, statistics.median(c.space)))} |"
        )
    table = "\n".join(lines)
    print(table)
    (work.parent / "last_link.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
