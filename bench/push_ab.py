"""Push with ``compression: float`` against push without it, interleaved, CLI subprocesses.

Run: .venv/bin/python bench/push_ab.py MODEL_DIR ROUNDS [BASELINE_SRC]
Each round pushes MODEL_DIR into a fresh home three ways, in an order rotated per round so all
see the same machine load: ``compression: none``, ``compression: float`` with this tree, and
(if BASELINE_SRC, a ``src`` folder of another revision, is given) ``compression: float`` with
that revision on ``PYTHONPATH``. Wall seconds include a ``sync`` (a push is durable); CPU is
user + sys of the child. Prints medians and the float/plain ratios.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from ab_rounds import interleaved, medians  # noqa: E402  (a sibling script, not a package)
from bench_core import rmtree  # noqa: E402
from bench_table import Sample, run  # noqa: E402

CLI = [sys.executable, str(Path(sys.executable).parent / "weightvault")]


def main() -> None:
    model, rounds = Path(sys.argv[1]), int(sys.argv[2])
    baseline = sys.argv[3] if len(sys.argv) > 3 else None
    work = Path(tempfile.mkdtemp(prefix="push-ab-"))
    cfgs = {"none": work / "none.yaml", "float": work / "float.yaml"}
    cfgs["none"].write_text("compression: none\n")
    cfgs["float"].write_text("compression: float\n")
    ways: list[tuple[str, str, str | None]] = [("none", "none", None), ("float", "float", None)]
    if baseline:
        ways.append(("float (baseline)", "float", baseline))

    def push(cfg: str, home: Path, env: dict[str, str]) -> Sample:
        cmd = [*CLI, "--home", str(home), "--config", str(cfgs[cfg]), "push", "bench/ab", str(model)]
        return run([*cmd, "--version", "v1", "--quiet"], env=env, source=[model])[0]

    try:
        samples = interleaved(ways, rounds, work, push)
    finally:
        rmtree(work)
    med, cpu = medians(samples)
    print("\n| push | median s (op + sync) | min..max | CPU s | vs plain push |")
    print("|---|---|---|---|---|")
    for k, v in samples.items():
        d = [s.durable for s in v]
        ratio = med[k] / med["none"]
        print(f"| {k} | {med[k]:.3f} | {min(d):.3f}..{max(d):.3f} | {cpu[k]:.2f} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
