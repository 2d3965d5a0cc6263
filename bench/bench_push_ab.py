"""A/B of the CLI push against another checkout's code, interleaved with ``cp -r`` + ``sync``.

Each run, in an order that alternates: ``cp -r`` + ``sync`` of the model (the reference), then
``weightvault push MODEL DIR --version v1 --quiet`` into a fresh home by this checkout's code
and by the code at ``--baseline`` (a ``src`` folder run with this interpreter through
``PYTHONPATH``), as ``bench_table`` runs it (its ``run``: wall + the ``sync`` after, user + sys
CPU, the source read once untimed before). ``--config FILE`` pushes with that config (e.g.
``compression: float``). Prints the medians and ratios.

    python bench/bench_push_ab.py --model DIR --baseline /path/to/main/src --runs 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_core import env_with, rmtree  # noqa: E402
from bench_table import Sample, run  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--baseline", type=Path, required=True, help="the other checkout's src folder")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--work", type=Path, default=Path("/tmp/wv-push-ab"))
    ap.add_argument("--config", type=Path, default=None)
    args = ap.parse_args()
    work: Path = args.work
    rmtree(work)
    work.mkdir(parents=True)
    cmd = [sys.executable, "-m", "weightvault.cli.entry"]
    glob = ["--config", str(args.config)] if args.config else []
    rows: dict[str, list[Sample]] = {"cp -r + sync": [], "this checkout": [], "baseline": []}
    for i in range(args.runs):
        order = ["this checkout", "baseline"] if i % 2 == 0 else ["baseline", "this checkout"]
        dst = work / "copy"
        rmtree(dst)
        rows["cp -r + sync"].append(run(["cp", "-r", str(args.model), str(dst)], source=[args.model])[0])
        rmtree(dst)
        for name in order:
            home = work / "home"
            rmtree(home)
            env = env_with(WEIGHTVAULT_CACHE_DIRECTORY=str(work / "cache"))
            if name == "baseline":
                env["PYTHONPATH"] = str(args.baseline)
            else:
                env.pop("PYTHONPATH", None)
            line = [*cmd, "--home", str(home), *glob, "push", "m", str(args.model), "-v", "v1", "--quiet"]
            rows[name].append(run(line, env=env, source=[args.model])[0])
            rmtree(home)
            rmtree(work / "cache")
        print(f"run {i + 1}: " + ", ".join(f"{k} {v[-1].durable:.3f}s" for k, v in rows.items()), flush=True)
    ref = statistics.median(s.durable for s in rows["cp -r + sync"])
    print(f"load average: {os.getloadavg()}")
    print("| what | median s (op + sync) | min..max | CPU s (median) | vs cp -r + sync |")
    print("| --- | --- | --- | --- | --- |")
    for name, samples in rows.items():
        d = [s.durable for s in samples]
        med = statistics.median(d)
        cpu = statistics.median(s.cpu for s in samples)
        print(f"| {name} | {med:.3f} | {min(d):.3f}..{max(d):.3f} | {cpu:.2f} | {med / ref:.2f}x |")


if __name__ == "__main__":
    main()
