"""An encrypted push of an existing encrypted model against the plain push, and against another
checkout's code, interleaved, CLI subprocesses.

Run: .venv/bin/python bench/encpush_ab.py MODEL_DIR ROUNDS BASELINE_SRC
Each round, in an order rotated per round so all see the same machine load, pushes MODEL_DIR
(``push bench/m MODEL_DIR --version v2 --quiet``) three ways into a fresh home:

* ``plain``: no encryption (this tree; the light path on both revisions);
* ``encrypted``: ``encryption.enabled`` in a home whose model already has a keyring (a one-file
  ``v1`` pushed first, untimed: the first encrypted push creates the keyring, on the full path);
* ``encrypted (baseline)``: the same with BASELINE_SRC (another revision's ``src``) on ``PYTHONPATH``.

Wall seconds include a ``sync`` (a push is durable); CPU is user + sys of the child. Prints
medians and the ratios to the plain push.
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

CLI = [sys.executable, "-m", "weightvault.cli.entry"]


def main() -> None:
    model, rounds, baseline = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    work = Path(tempfile.mkdtemp(prefix="encpush-ab-"))
    seed = work / "seed"
    seed.mkdir()
    (seed / "config.json").write_text('{"seed": true}')
    ways = [("plain", False, None), ("encrypted", True, None), ("encrypted (baseline)", True, baseline)]

    def push(encrypted: bool, home: Path, env: dict[str, str]) -> Sample:
        home.mkdir()
        if encrypted:
            (home / "config.yaml").write_text("encryption:\n  enabled: true\n")
            run([*CLI, "--home", str(home), "push", "bench/m", str(seed), "-v", "v1", "-q"], env=env)
        cmd = [*CLI, "--home", str(home), "push", "bench/m", str(model), "--version", "v2", "--quiet"]
        return run(cmd, env=env, source=[model])[0]

    try:
        samples = interleaved(ways, rounds, work, push)
    finally:
        rmtree(work)
    med, cpu = medians(samples)
    print(f"\nmedians of {rounds} rounds (wall incl. sync / CPU-s), ratio to the plain push:")
    for name in samples:
        print(
            f"  {name:21s} {med[name]:.3f} s  {cpu[name]:.2f} CPU-s  "
            f"x{med[name] / med['plain']:.2f} wall  x{cpu[name] / cpu['plain']:.2f} CPU"
        )


if __name__ == "__main__":
    main()
