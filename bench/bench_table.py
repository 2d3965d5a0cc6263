#!/usr/bin/env python
"""Every row of the performance table (issue 9) in one command: ``make bench``.

Each operation runs as a CLI subprocess; each row is a median over ``--runs`` runs and is
divided by its reference measured in the same invocation, interleaved run by run:

* start-up (``--version``, ``ls``, ``show``, ``ls MODEL --json`` with many versions):
  ``python -c pass`` with the same interpreter;
* push, pull (empty cache), repeat and warm pulls, the 10,000-file folder, float-aware
  compression: ``cp -r`` + ``sync`` of the same folder (a push is durable, so the copy is too).
  Under ``cache_fill: auto`` a pull from this local store placed by copy (ext4) fills no cache,
  so the warm-cache row warms the cache with a hardlink pull first;
* encrypted push: the first (which creates the model's keyring) and the next version's (its
  keyring exists: a one-file version is pushed first, untimed), each against the plain push;
* encrypted pull: the CPU (user + sys) of the plain pull of the same model;
* S3 push/pull: plain boto3 against the same moto server (``bench_s3.py``, run as a child);
* peer: restic (Debian package ``restic``, installed here on first use), backup into a fresh
  repository and restore, on the same data.

``--quick`` shrinks sizes and runs for a loaded machine. ``--large SIZE`` runs only the peak
RSS case (push and pull of one big model; not CI). The load average is recorded with the
figures; ``--md`` appends the section to bench/RESULTS.md.

    .venv/bin/python bench/bench_table.py                 # 1 GiB, 10,000 files, 1,000/10,000 versions
    .venv/bin/python bench/bench_table.py --quick --md    # smaller and fewer runs, then record
    .venv/bin/python bench/bench_table.py --large 16GiB   # peak RSS of push and pull only
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from bench_core import (  # noqa: E402  (a sibling script, not a package)
    GNU_TIME,
    BenchError,
    compile_package,
    env_with,
    machine_info,
    rmtree,
    run_quiet,
    same_tree,
    warm,
    weightvault_cmd,
)
from weightvault.demo.synthetic import format_size, generate_model, parse_size  # noqa: E402

MODEL = "bench/table"
RESTIC_PASSWORD = "bench-only-password"


@dataclass
class Sample:
    seconds: float
    sync_seconds: float
    cpu: float  # user + sys of the child
    maxrss_kib: int

    @property
    def durable(self) -> float:
        return self.seconds + self.sync_seconds


@dataclass
class Row:
    name: str
    ref: str  # key of the reference row ("" for a reference)
    samples: list[Sample] = field(default_factory=list)
    target: str = ""
    by: str = "durable"  # what the ratio compares: durable seconds or cpu

    def med(self, attr: str) -> float:
        return statistics.median(float(getattr(s, attr)) for s in self.samples)


class Table:
    """Rows in insertion order; a row's ratio is against its reference's median."""

    def __init__(self) -> None:
        self.rows: dict[str, Row] = {}
        self.notes: list[str] = []

    def row(self, name: str, ref: str = "", target: str = "", by: str = "durable") -> Row:
        if name not in self.rows:
            self.rows[name] = Row(name, ref, target=target, by=by)
        return self.rows[name]

    def add(self, name: str, sample: Sample, ref: str = "", target: str = "", by: str = "durable") -> None:
        self.row(name, ref, target, by).samples.append(sample)

    def ratio(self, r: Row) -> str:
        ref = self.rows.get(r.ref)
        if not r.ref or ref is None or not ref.samples or not r.samples:
            return ""
        a, b = r.med(r.by), ref.med(r.by)
        return f"{a / b:.2f}x" if b else ""

    def markdown(self) -> str:
        lines = [
            "| operation | median s (op + sync) | min..max | CPU s | peak RSS MiB | vs reference | target |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in self.rows.values():
            if not r.samples:
                continue
            d = [s.durable for s in r.samples]
            spread = f"{min(d):.3f}..{max(d):.3f}" if len(d) > 1 else ""
            lines.append(
                f"| {r.name} | {r.med('durable'):.3f} | {spread} | {r.med('cpu'):.2f} "
                f"| {r.med('maxrss_kib') / 1024:.0f} | {self.ratio(r)} | {r.target} |"
            )
        return "\n".join(lines)


def run(
    cmd: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    durable: bool = True,
    source: Sequence[Path] = (),
) -> tuple[Sample, str]:
    """Run ``cmd`` under GNU time: wall, CPU, peak RSS; then time a ``sync`` if ``durable``.

    The data it reads (``source``) is read first, untimed, so every tool starts warm; a
    ``sync`` before it keeps earlier steps' dirty pages out of its timing.
    """
    for src in source:
        warm(src)
    if durable:
        os.sync()
    with tempfile.NamedTemporaryFile(suffix=".time") as tf, tempfile.TemporaryFile() as out:
        wrapped = [GNU_TIME, "-f", "%M %U %S", "-o", tf.name, "--", *cmd]
        t0 = time.perf_counter()
        proc = subprocess.run(wrapped, stdout=out, stderr=subprocess.PIPE, env=env, cwd=cwd)
        seconds = time.perf_counter() - t0
        sync_s = 0.0
        if durable:
            t1 = time.perf_counter()
            os.sync()
            sync_s = time.perf_counter() - t1
        if proc.returncode != 0:
            tail = proc.stderr.decode(errors="replace").strip().splitlines()[-20:]
            raise BenchError(f"failed ({proc.returncode}): {' '.join(map(str, cmd))}\n" + "\n".join(tail))
        fields = Path(tf.name).read_text().split()[-3:]
        out.seek(0)
        stdout = out.read().decode(errors="replace")
    rss, user, system = int(fields[0]), float(fields[1]), float(fields[2])
    return Sample(seconds, sync_s, user + system, rss), stdout


# --------------------------------------------------------------------------------------
# data


def big_model(out: Path, size: int) -> Path:
    """The synthetic bf16 checkpoint in 4 shards, cached across invocations."""
    dest = out / f"table-model-{size}"
    stamp = dest / ".complete"
    if not stamp.exists():
        rmtree(dest)
        t0 = time.perf_counter()
        generate_model(dest / "m", size, shards=4, dtype="bf16", seed=0)
        stamp.write_text("1")
        print(f"  generated {format_size(size)} in {time.perf_counter() - t0:.0f} s", flush=True)
    return dest / "m"


def small_files(out: Path, count: int) -> Path:
    """``count`` files of 1-16 KiB of random bytes in 100 folders (about 85 MB for 10,000)."""
    dest = out / f"table-small-{count}"
    stamp = dest / ".complete"
    if not stamp.exists():
        rmtree(dest)
        rng = random.Random(9)
        for i in range(count):
            d = dest / "m" / f"d{i % 100:02d}"
            d.mkdir(parents=True, exist_ok=True)
            (d / f"f{i:05d}.bin").write_bytes(rng.randbytes(rng.randint(1024, 16 * 1024)))
        stamp.write_text("1")
    return dest / "m"


def versions_home(out: Path, count: int, start_from: Path | None) -> Path:
    """A home whose model has ``count`` versions, made by real (SDK) pushes; cached.

    Each version is a 2-file tree whose one file changes; building 10,000 starts from a copy
    of the 1,000-version home.
    """
    dest = out / f"table-versions-{count}"
    stamp = dest / ".complete"
    if stamp.exists():
        return dest / "home"
    rmtree(dest)
    have = 0
    if start_from is not None and (start_from.parent / ".complete").exists():
        shutil.copytree(start_from, dest / "home", symlinks=True)
        have = int((start_from.parent / ".complete").read_text())
    code = (
        "import sys; from pathlib import Path\n"
        "from weightvault.vault.vault import Vault\n"
        "home, src, a, b = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])\n"
        "src.mkdir(parents=True, exist_ok=True)\n"
        "(src / 'config.json').write_text('{\"arch\": \"tiny\"}')\n"
        "v = Vault.open(home)\n"
        "for i in range(a, b):\n"
        "    (src / 'weights.bin').write_bytes(i.to_bytes(8, 'little') * 64)\n"
        "    v.push(sys.argv[5], src, version=f'v{i:05d}')\n"
    )
    t0 = time.perf_counter()
    run_quiet(
        [sys.executable, "-c", code, str(dest / "home"), str(dest / "src"), str(have), str(count), MODEL]
    )
    stamp.write_text(str(count))
    print(f"  made {count - have} versions in {time.perf_counter() - t0:.0f} s", flush=True)
    return dest / "home"


# --------------------------------------------------------------------------------------
# restic


def restic() -> str | None:
    """The restic binary; installed from the Debian package on first use (bench set-up only)."""
    found = shutil.which("restic")
    if found:
        return found
    print("  installing restic (apt-get) ...", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    subprocess.run([*sudo, "apt-get", "install", "-y", "-q", "restic"], env=env, capture_output=True)
    return shutil.which("restic")


def restic_rows(t: Table, tag: str, data: Path, work: Path, ref: str) -> None:
    binary = restic()
    if binary is None:
        t.notes.append("restic could not be installed: no restic rows")
        return
    env = dict(os.environ, RESTIC_PASSWORD=RESTIC_PASSWORD, RESTIC_CACHE_DIR=str(work / "restic-cache"))
    repo = work / "restic-repo"
    rmtree(repo)
    rmtree(work / "restic-cache")
    run_quiet([binary, "init", "-q", "--repo", str(repo)], env=env)
    s, _ = run([binary, "backup", "-q", "--repo", str(repo), "."], env=env, cwd=data, source=[data])
    t.add(f"restic {run_quiet([binary, 'version'], env=env).split()[1]}: backup {tag}", s, ref)
    dest = work / "restic-restore"
    rmtree(dest)
    s, _ = run(
        [binary, "restore", "-q", "--repo", str(repo), "latest", "--target", str(dest)],
        env=env,
        source=[repo],
    )
    t.add(f"restic: restore {tag}", s, ref)
    rmtree(dest)
    rmtree(repo)


# --------------------------------------------------------------------------------------
# the sections


#: the full CLI (Typer, settings, the vault, SQLAlchemy), never the read-only fast path: the
#: "before" of the fast path, measured in the same run
FULL_CLI = [sys.executable, "-m", "weightvault.cli.app"]


def startup(t: Table, wv: list[str], work: Path, runs: int, small: Path) -> None:
    home = work / "startup-home"
    rmtree(home)
    run_quiet([*wv, "--home", str(home), "push", "tiny", str(small / "d00"), "--version", "v1", "--quiet"])
    run_quiet([*wv, "--home", str(home), "ls"])  # the index follows the push's journal entry once
    py = [sys.executable, "-c", "pass"]
    ref = "`python -c pass` (start-up reference)"
    cases = [
        (ref, py, ""),
        ("`weightvault --version`", [*wv, "--version"], "≤ 8x"),
        ("`weightvault ls` (one small model)", [*wv, "--home", str(home), "ls"], "≤ 15x"),
        ("`weightvault show tiny`", [*wv, "--home", str(home), "show", "tiny"], "≤ 15x"),
        ("`weightvault ls`, full CLI path (for comparison)", [*FULL_CLI, "--home", str(home), "ls"], ""),
        ("`weightvault show tiny`, full CLI path", [*FULL_CLI, "--home", str(home), "show", "tiny"], ""),
    ]
    for _ in range(max(runs, 5)):
        for name, cmd, target in cases:
            s, _ = run(cmd, durable=False)
            t.add(name, s, "" if cmd is py else ref, target)
    rmtree(home)


def versions(t: Table, wv: list[str], out: Path, counts: Sequence[int], runs: int) -> None:
    prev: Path | None = None
    ref = "`python -c pass` (start-up reference)"
    for n in counts:
        home = versions_home(out, n, prev)
        prev = home
        run_quiet([*wv, "--home", str(home), "ls"])  # the index follows the pushes' journal once
        for _ in range(max(runs, 3)):
            s, stdout = run([*wv, "--home", str(home), "ls", MODEL, "--json"], durable=False)
            t.add(f"`ls MODEL --json`, {n:,} versions", s, ref, "≤ 25x, flat")
            s, _ = run([*FULL_CLI, "--home", str(home), "ls", MODEL, "--json"], durable=False)
            t.add(f"`ls MODEL --json`, {n:,} versions, full CLI path", s, ref)
            s, _ = run([sys.executable, "-c", "pass"], durable=False)  # the reference, interleaved
            t.add(ref, s)
        listed = json.loads(stdout)
        got = len(listed if isinstance(listed, list) else listed.get("versions", []))
        if got != n:
            raise BenchError(f"ls --json listed {got} versions, expected {n}")


def big(t: Table, wv: list[str], work: Path, model: Path, runs: int, with_restic: bool) -> None:
    ref = "`cp -r` + `sync`, model"
    size = format_size(sum(p.stat().st_size for p in model.iterdir()))
    enc_cfg = work / "encrypted.yaml"
    enc_cfg.write_text("encryption:\n  enabled: true\n")
    float_cfg = work / "float.yaml"
    float_cfg.write_text("compression: float\n")
    seed = work / "seed"
    rmtree(seed)
    seed.mkdir()
    (seed / "config.json").write_text('{"seed": true}')
    for i in range(runs):
        dst = work / "ref-copy"
        rmtree(dst)
        s, _ = run(["cp", "-r", str(model), str(dst)], source=[model])
        t.add(ref, s)
        rmtree(dst)
        root = work / "wv"
        rmtree(root)
        home, cache = root / "home", root / "cache"
        env = env_with(WEIGHTVAULT_CACHE_DIRECTORY=str(cache))
        base = [*wv, "--home", str(home)]
        s, _ = run([*base, "push", MODEL, str(model), "--version", "v1", "--quiet"], env=env, source=[model])
        t.add(f"push {size}", s, ref, "≤ 1.5x")
        rmtree(cache)
        s, _ = run(
            [*base, "pull", f"{MODEL}@v1", str(root / "p1"), "--quiet"], env=env, source=[home / "store"]
        )
        t.add(f"pull {size}, empty cache", s, ref, "≤ 1.5x")
        if i == 0 and not same_tree(model, root / "p1"):
            raise BenchError("pulled tree differs from the model")
        # the default placement copies on ext4, so ``cache_fill: auto`` left the cache empty: a
        # repeat pull rebuilds from the local store again (``bench_cache_fill.py``: vs a cache)
        s, _ = run(
            [*base, "pull", f"{MODEL}@v1", str(root / "p2"), "--quiet"], env=env, source=[home / "store"]
        )
        t.add("repeat pull, local store, default link mode (copy on ext4: no cache)", s, ref, "")
        rmtree(root / "p1")
        rmtree(root / "p2")
        # a hardlink pull fills the cache (the placement shares the entry); the next one is warm
        rmtree(cache)
        hardlink = ["--quiet", "--link-mode", "hardlink"]
        s, _ = run(
            [*base, "pull", f"{MODEL}@v1", str(root / "p3"), *hardlink], env=env, source=[home / "store"]
        )
        t.add(f"pull {size}, empty cache, `--link-mode hardlink`", s, ref, "")
        s, _ = run([*base, "pull", f"{MODEL}@v1", str(root / "p4"), *hardlink], env=env, source=[cache])
        t.add("pull, warm cache, `--link-mode hardlink`", s, ref, "≤ 0.1x")
        plain_pull = t.rows[f"pull {size}, empty cache"].samples[-1]
        rmtree(root)
        # float-aware compression: push of the same model, fresh home
        s, _ = run(
            [*base, "--config", str(float_cfg), "push", MODEL, str(model), "--version", "v1", "--quiet"],
            env=env,
            source=[model],
        )
        t.add(f"push {size}, compression: float", s, f"push {size}", "≤ 1.3x push")
        rmtree(cache)
        s, _ = run(
            [*base, "--config", str(float_cfg), "pull", f"{MODEL}@v1", str(root / "pf"), "--quiet"],
            env=env,
            source=[home / "store"],
        )
        t.add(f"pull {size}, compression: float, empty cache", s, f"pull {size}, empty cache", "")
        rmtree(root)
        # encryption: the pull's CPU against the plain pull's
        home.mkdir(parents=True)
        (home / "config.yaml").write_text(enc_cfg.read_text())
        s, _ = run([*base, "push", MODEL, str(model), "--version", "v1", "--quiet"], env=env, source=[model])
        t.add(f"push {size}, encrypted", s, f"push {size}", "")
        rmtree(cache)
        s, _ = run(
            [*base, "pull", f"{MODEL}@v1", str(root / "pe"), "--quiet"], env=env, source=[home / "store"]
        )
        t.add(f"pull {size}, encrypted, CPU", s, f"pull {size}, empty cache (CPU)", "≤ 1.10x CPU", by="cpu")
        t.add(f"pull {size}, empty cache (CPU)", plain_pull, "", "", by="cpu")
        rmtree(root)
        # the next encrypted version of a model that has its keyring (one small version first)
        home.mkdir(parents=True)
        (home / "config.yaml").write_text(enc_cfg.read_text())
        run_quiet([*base, "push", MODEL, str(seed), "--version", "v0", "--quiet"], env=env)
        s, _ = run([*base, "push", MODEL, str(model), "--version", "v1", "--quiet"], env=env, source=[model])
        t.add(f"push {size}, encrypted, model with keys", s, f"push {size}", "")
        rmtree(root)
        if with_restic:
            restic_rows(t, size, model, work, ref)
        print(f"  big model run {i + 1}/{runs} done (load {os.getloadavg()[0]:.1f})", flush=True)


def many_files(t: Table, wv: list[str], work: Path, data: Path, runs: int, with_restic: bool) -> None:
    n = sum(1 for p in data.rglob("*") if p.is_file())
    total = sum(p.stat().st_size for p in data.rglob("*") if p.is_file())
    tag = f"{n:,} files ({format_size(total)})"
    ref = f"`cp -r` + `sync`, {tag}"
    for i in range(runs):
        dst = work / "ref-small"
        rmtree(dst)
        s, _ = run(["cp", "-r", str(data), str(dst)], source=[data])
        t.add(ref, s)
        rmtree(dst)
        root = work / "wv-small"
        rmtree(root)
        home, cache = root / "home", root / "cache"
        env = env_with(WEIGHTVAULT_CACHE_DIRECTORY=str(cache))
        base = [*wv, "--home", str(home)]
        s, _ = run([*base, "push", MODEL, str(data), "--version", "v1", "--quiet"], env=env, source=[data])
        t.add(f"push {tag}", s, ref, "≤ 3x")
        s, _ = run([*base, "push", MODEL, str(data), "--version", "v2", "--quiet"], env=env, source=[data])
        t.add(f"re-push {tag}, unchanged", s, ref, "")
        rmtree(cache)
        s, _ = run(
            [*base, "pull", f"{MODEL}@v1", str(root / "p"), "--quiet"], env=env, source=[home / "store"]
        )
        t.add(f"pull {tag}, empty cache", s, ref, "≤ 3x")
        if i == 0 and not same_tree(data, root / "p"):
            raise BenchError("pulled small-file tree differs")
        rmtree(root)
        if with_restic:
            restic_rows(t, tag, data, work, ref)
        print(f"  small files run {i + 1}/{runs} done (load {os.getloadavg()[0]:.1f})", flush=True)


def s3(t: Table, out: Path, size: str, runs: int) -> None:
    """S3 rows from bench_s3.py (moto on loopback), run as a child with the same sizes."""
    cmd = [sys.executable, str(HERE / "bench_s3.py"), "--size", size, "--runs", str(runs)]
    proc = subprocess.run([*cmd, "--no-md", "--out", str(out)], capture_output=True, text=True)
    if proc.returncode != 0:
        t.notes.append("bench_s3.py failed: " + (proc.stderr.strip().splitlines() or ["?"])[-1])
        return
    dump = json.loads((out / "last_s3.json").read_text())
    for m in dump["metrics"]:
        key = {
            ("boto3 default", "upload (upload_file x files)"): ("S3: boto3 upload_file (reference)", "", ""),
            ("boto3 default", "download (download_file x files)"): (
                "S3: boto3 download_file (reference)",
                "",
                "",
            ),
            ("weightvault", "push, first"): ("S3: push", "S3: boto3 upload_file (reference)", "≤ 1.3x"),
            ("weightvault", "pull into an empty folder"): (
                "S3: pull",
                "S3: boto3 download_file (reference)",
                "≤ 1.3x",
            ),
        }.get((m["tool"], m["op"]))
        if key is None:
            continue
        for s in m["samples"]:
            t.add(
                key[0],
                Sample(s["seconds"], s["sync_seconds"], s["client_cpu"], s["maxrss_kib"]),
                key[1],
                key[2],
            )


def large(t: Table, wv: list[str], work: Path, out: Path, size: int) -> None:
    """Peak RSS of push and pull of one big model (cache off, so the disk holds 3 copies)."""
    model = big_model(out, size)
    root = work / "wv-large"
    rmtree(root)
    home = root / "home"
    env = env_with(WEIGHTVAULT_CACHE_ENABLED="false")
    base = [*wv, "--home", str(home)]
    s, _ = run([*base, "push", MODEL, str(model), "--version", "v1", "--quiet"], env=env)
    t.add(f"push {format_size(size)} (peak RSS case)", s, "", "≤ 300 MiB RSS")
    s, _ = run([*base, "pull", f"{MODEL}@v1", str(root / "p"), "--quiet"], env=env)
    t.add(f"pull {format_size(size)}, no cache (peak RSS case)", s, "", "≤ 300 MiB RSS")
    rmtree(root)


# --------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="256 MiB, 2,000 files, 200/1,000 versions, 2 runs")
    ap.add_argument("--runs", type=int, default=None, help="runs per row (default 3, quick 2)")
    ap.add_argument("--size", default=None, help="model size (default 1GiB, quick 256MiB)")
    ap.add_argument("--files", type=int, default=None, help="small files (default 10000, quick 2000)")
    ap.add_argument("--versions", default=None, help="version counts (default 1000,10000; quick 200,1000)")
    ap.add_argument("--skip", default="", help="comma list of: startup,versions,big,small,s3,restic")
    ap.add_argument("--large", default=None, help="only the peak-RSS case, with a model of this size")
    ap.add_argument("--out", type=Path, default=HERE / "out", help="work folder (bench/out)")
    ap.add_argument("--md", action="store_true", help="append the section to bench/RESULTS.md")
    ap.add_argument("--weightvault", default=None, help="command to run the CLI (default: beside python)")
    args = ap.parse_args(argv)
    runs = args.runs or (2 if args.quick else 3)
    size_s = args.size or ("256MiB" if args.quick else "1GiB")
    files = args.files or (2000 if args.quick else 10000)
    counts = [int(c) for c in (args.versions or ("200,1000" if args.quick else "1000,10000")).split(",")]
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    out: Path = args.out.resolve()
    work = out / "work-table"
    work.mkdir(parents=True, exist_ok=True)
    wv = weightvault_cmd(args.weightvault)
    compile_package()
    machine = machine_info(out)
    loads = [os.getloadavg()]
    t = Table()
    try:
        if args.large:
            large(t, wv, work, out, parse_size(args.large))
        else:
            small = small_files(out, files)
            if "startup" not in skip:
                print("start-up ...", flush=True)
                startup(t, wv, work, runs, small)
            if "versions" not in skip:
                print("versions ...", flush=True)
                versions(t, wv, out, counts, runs)
            loads.append(os.getloadavg())
            if "small" not in skip:
                print("many small files ...", flush=True)
                many_files(t, wv, work, small, runs, "restic" not in skip)
            loads.append(os.getloadavg())
            if "big" not in skip:
                print(f"{size_s} model ...", flush=True)
                big(t, wv, work, big_model(out, parse_size(size_s)), runs, "restic" not in skip)
            loads.append(os.getloadavg())
            if "s3" not in skip:
                print("S3 (bench_s3.py) ...", flush=True)
                s3(t, out, size_s, runs)
    except BenchError as exc:
        t.notes.append(f"stopped on an error: {str(exc).splitlines()[0]}")
        print(f"ERROR: {exc}", file=sys.stderr, flush=True)
    finally:
        rmtree(work)
    loads.append(os.getloadavg())
    mode = "quick" if args.quick else "full"
    head = (
        f"### {machine['date']}, `bench/bench_table.py` ({mode}: {size_s}, {files:,} files, "
        f"{'/'.join(f'{c:,}' for c in counts)} versions, medians of {runs})"
        if not args.large
        else f"### {machine['date']}, peak RSS, {args.large} (`bench/bench_table.py --large {args.large}`)"
    )
    load_s = " → ".join(f"{a[0]:.1f}" for a in loads)
    section = "\n".join(
        [
            head,
            "",
            f"Load average (1 min) through the run: {load_s}, on {machine['cores']} cores "
            f"({machine['cpu']}); other engineers' jobs shared the machine.",
            "",
            t.markdown(),
            "",
            *[f"- {n}" for n in t.notes],
            "",
        ]
    )
    print(section)
    (out / "last_table.md").write_text(section)
    if args.md:
        with (HERE / "RESULTS.md").open("a") as f:
            f.write("\n" + section)
        print("appended to bench/RESULTS.md")
    return 1 if any(n.startswith("stopped") for n in t.notes) else 0


if __name__ == "__main__":
    started = dt.datetime.now(dt.UTC)
    code = main()
    print(f"took {(dt.datetime.now(dt.UTC) - started).total_seconds():.0f} s")
    raise SystemExit(code)
