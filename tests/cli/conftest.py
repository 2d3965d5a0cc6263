"""What the tests of the fast paths (``cli/fastread.py``, ``cli/fastpull.py``) share: running the
full CLI, the console scripts' entry point, and a fast path's ``serve()`` alone, which reports
which heavy modules it loaded."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

#: serve() alone exits 99 (and prints nothing) when its fast path declined
DECLINED = 99


def serve_script(module: str, heavy: Sequence[str]) -> str:
    """A script running ``module.serve`` on its arguments alone: exit 0 when the fast path answered,
    ``DECLINED`` when it did not (or serve's own exit code); it writes which of ``heavy`` it
    loaded on a ``LOADED:`` line."""
    return (
        "import sys\n"
        f"from {module} import serve\n"
        "try:\n"
        "    served = serve(sys.argv[1:])\n"
        "finally:  # also when serve exits (a failure it reported)\n"
        f"    heavy = sorted(m for m in {tuple(heavy)!r} if m in sys.modules)\n"
        "    sys.stderr.write('LOADED:' + ','.join(heavy) + '\\n')\n"
        f"sys.exit(0 if served else {DECLINED})\n"
    )


def _run(argv: list[str], env: dict[str, str] | None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})}
    )


def full(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The full CLI (Typer, the vault, the refresh), never a fast path."""
    return _run([sys.executable, "-m", "weightvault.cli.app", "--home", str(home), *args], env)


def entry(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The console scripts' entry point, as a user runs ``weightvault``."""
    return _run([sys.executable, "-m", "weightvault.cli.entry", "--home", str(home), *args], env)


def serve_alone(
    script: str, home: Path, *args: str, env: dict[str, str] | None = None
) -> tuple[int, str, str, list[str]]:
    """(exit code, stdout, stderr without the probe line, heavy modules loaded) of ``script``
    (a ``serve_script``)."""
    got = _run([sys.executable, "-c", script, "--home", str(home), *args], env)
    lines = got.stderr.splitlines(keepends=True)
    loaded = [x for x in lines if x.startswith("LOADED:")]
    assert len(loaded) == 1, got.stderr
    heavy = [m for m in loaded[0].strip().removeprefix("LOADED:").split(",") if m]
    return got.returncode, got.stdout, "".join(x for x in lines if not x.startswith("LOADED:")), heavy
