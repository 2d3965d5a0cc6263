#!/usr/bin/env python
"""What ``cache_fill`` costs and buys for a store in a local folder placed by copy (ext4).

One model pushed once, then, run by run interleaved (same load for every row): ``cp -r`` +
``sync`` of the model (the reference); a cold pull under ``cache_fill: auto`` (the destination
only); a cold pull under ``always`` (cache entry + destination, the behaviour before the
setting); a repeat pull under each (``auto``: rebuilt from the local packs again; ``always``:
copied from the cache). ``--before CMD`` adds the cold pull of another build of the CLI (e.g.
``env PYTHONPATH=/tmp/old/src .venv/bin/weightvault``) into the same loop. CLI subprocesses;
wall includes the ``sync`` after each command; CPU is user + sys of the command.

    .venv/bin/python bench/bench_cache_fill.py --size 1GiB --runs 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_core import compile_package, env_with, machine_info, rmtree, same_tree, weightvault_cmd  # noqa: E402
from bench_table import MODEL, Table, big_model, run  # noqa: E402
from weightvault.demo.synthetic import format_size, parse_size  # noqa: E402


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--size", default="256MiB")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--before", default=None, help="command of another CLI build for a 'before' cold pull")
    ap.add_argument("--out", type=Path, default=HERE / "out")
    args = ap.parse_args()
    out: Path = args.out.resolve()
    work = out / "work-cache-fill"
    rmtree(work)
    work.mkdir(parents=True)
    wv = weightvault_cmd(None)
    compile_package()
    machine = machine_info(out)
    model = big_model(out, parse_size(args.size))
    size = format_size(sum(p.stat().st_size for p in model.iterdir()))
    home, cache = work / "home", work / "cache"
    env = env_with(WEIGHTVAULT_CACHE_DIRECTORY=str(cache), WEIGHTVAULT_LINK_MODE="copy")
    always = {**env, "WEIGHTVAULT_CACHE_FILL": "always"}
    base = ["--home", str(home)]
    run([*wv, *base, "push", MODEL, str(model), "--version", "v1", "--quiet"], env=env, source=[model])
    before = args.before.split() if args.before else None
    if before:  # compile the other build's modules before the first timed run
        run([*before, *base, "pull", f"{MODEL}@v1", str(work / "x"), "--quiet"], env=env, durable=False)
        rmtree(work / "x")
    t = Table()
    ref = "`cp -r` + `sync`"
    loads = [os.getloadavg()[0]]
    disk: dict[str, int] = {}
    store = [home / "store"]

    def pull(
        name: str, cmd: list[str], environ: dict[str, str], source: list[Path], ref_row: str = ref
    ) -> None:
        dest = work / "dest"
        s, _ = run([*cmd, *base, "pull", f"{MODEL}@v1", str(dest), "--quiet"], env=environ, source=source)
        t.add(name, s, ref)
        if name not in disk:
            if not same_tree(model, dest):
                raise SystemExit(f"{name}: pulled tree differs from the model")
            disk[name] = du(cache)
        rmtree(dest)

    for i in range(args.runs):
        s, _ = run(["cp", "-r", str(model), str(work / "copy")], source=[model])
        t.add(ref, s)
        rmtree(work / "copy")
        if before:
            rmtree(cache)
            pull(f"cold pull {size}, before (cache + copy)", before, env, store)
        rmtree(cache)
        pull(f"cold pull {size}, `cache_fill: auto` (destination only)", wv, env, store)
        pull("repeat pull, `auto` (no cache: rebuilt from the local packs)", wv, env, store)
        rmtree(cache)
        pull(f"cold pull {size}, `cache_fill: always` (cache + copy)", wv, always, store)
        pull("repeat pull, `always` (copied from the cache)", wv, always, [cache])
        loads.append(os.getloadavg()[0])
        print(f"  run {i + 1}/{args.runs} done (load {loads[-1]:.1f})", flush=True)
    rmtree(work)
    print(f"### {machine['date']}, `bench/bench_cache_fill.py --size {args.size} --runs {args.runs}`\n")
    load = " → ".join(f"{x:.1f}" for x in loads)
    print(f"Load average (1 min) through the run: {load}, on {machine['cores']} cores.\n")
    print(t.markdown())
    print()
    for name, n in disk.items():
        print(f"- cache after `{name}`: {format_size(n)}")
    shutil.rmtree(out / "work-cache-fill", ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
