"""Start-up fast paths: ``--version`` answers without loading the CLI framework or the vault,
and says exactly what the full CLI says."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from weightvault import __version__

PROBE = """
import sys
sys.argv = ["weightvault", *sys.argv[1:]]
from weightvault.cli.entry import main
main()
heavy = sorted(m for m in ("typer", "click", "rich", "sqlalchemy", "pydantic", "weightvault.vault.vault")
               if m in sys.modules)
print("loaded:", ",".join(heavy))
"""


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


def test_version_loads_no_framework_and_matches_the_full_cli() -> None:
    fast = _run(sys.executable, "-c", PROBE, "--version")
    assert fast.returncode == 0, fast.stderr
    assert fast.stdout.splitlines() == [f"weightvault {__version__}", "loaded: "]
    full = _run(sys.executable, "-m", "weightvault.cli.app", "--version")
    assert full.returncode == 0 and full.stdout == f"weightvault {__version__}\n"


def test_other_command_lines_go_to_the_full_cli(tmp_path: Path) -> None:
    got = _run(sys.executable, "-c", PROBE, "--home", str(tmp_path / "h"), "ls", "--json")
    assert got.returncode == 0, got.stderr
    assert got.stdout.strip() == "[]"  # the full CLI answered (and exited: no probe line)
    bad = _run(sys.executable, "-c", PROBE, "--version", "--bogus")
    assert bad.returncode == 2  # not the fast path: the full CLI's usage error


BLAS_PROBE = """
import os, sys
sys.argv = ["weightvault", "--version"]
from weightvault.cli.entry import main
main()
import numpy  # what float-aware compression loads
print("blas threads:", os.environ.get("OPENBLAS_NUM_THREADS"))
"""


def test_the_cli_keeps_numpy_from_starting_a_blas_thread_pool() -> None:
    """Unless the caller says otherwise: then its value stands."""
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    got = subprocess.run(
        [sys.executable, "-c", BLAS_PROBE], capture_output=True, text=True, env=env, timeout=120
    )
    assert got.returncode == 0, got.stderr
    assert got.stdout.splitlines()[-1] == "blas threads: 1"
    env["OPENBLAS_NUM_THREADS"] = "3"
    got = subprocess.run(
        [sys.executable, "-c", BLAS_PROBE], capture_output=True, text=True, env=env, timeout=120
    )
    assert got.stdout.splitlines()[-1] == "blas threads: 3"
