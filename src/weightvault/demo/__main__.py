"""``python -m weightvault.demo``: the embedded default end to end on a small generated model.

Generates a model, pushes two versions, lists, shows, pulls with the cache cold and warm,
verifies every byte, and prints what each step stored — the README's "run" command.

Everything goes into one named folder (``$TMPDIR/weightvault-demo`` unless ``--workdir``) that
each run empties and reuses, so running the demo again does not leave another copy behind.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from weightvault.demo.synthetic import change_one_tensor, generate_model, parse_size

MARKER = ".weightvault-demo"


def _run(home: Path, *args: str) -> None:
    cmd = [sys.executable, "-m", "weightvault.cli.app", "--home", str(home), *args]
    print("$ weightvault " + " ".join(args), flush=True)
    subprocess.run(cmd, check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", default="64MiB", help="model size to generate (default 64MiB)")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "weightvault-demo",
        help="where to put the demo; emptied first (default: $TMPDIR/weightvault-demo)",
    )
    args = parser.parse_args()
    work = args.workdir
    marker = work / MARKER
    if work.exists() and any(work.iterdir()) and not marker.exists():
        print(f"{work} is not empty and not a previous demo; choose another --workdir", file=sys.stderr)
        return 2
    shutil.rmtree(work, ignore_errors=True)  # the previous run's demo
    work.mkdir(parents=True)
    marker.write_text("made by python -m weightvault.demo; emptied by its next run\n")
    home, model = work / "vault", work / "model"
    print(f"generating a {args.size} model in {model}", flush=True)
    shards = generate_model(model, parse_size(args.size), shards=2)
    _run(
        home,
        "push",
        "demo/tiny-llm",
        str(model),
        "--version",
        "v1.0.0",
        "--message",
        "first",
        "--meta",
        "team=demo",
    )
    change_one_tensor(shards[0], fraction=0.01)
    _run(home, "push", "demo/tiny-llm", str(model), "--message", "one tensor changed")
    _run(home, "ls")
    _run(home, "show", "demo/tiny-llm@v1.0.0")
    _run(home, "alias", "set", "demo/tiny-llm", "production", "v1.0.0")
    _run(home, "pull", "demo/tiny-llm@production", str(work / "deployed"))
    _run(home, "pull", "demo/tiny-llm", str(work / "latest"), "--include", "*.json")
    _run(home, "verify", "--read-data")
    _run(home, "stats")
    print(f"demo finished; everything is under {work} (the next run empties and reuses it)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
