"""Run the real CLI entry point in this process (cheaper than a subprocess per command line)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from weightvault.cli.app import main


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def wv_in(capsys: pytest.CaptureFixture[str], home: Path, *args: str) -> Result:
    """``weightvault --home HOME ARGS…`` through ``main()``: its exit code and output."""
    capsys.readouterr()
    argv = sys.argv
    sys.argv = ["weightvault", "--home", str(home), *args]
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = argv
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)
