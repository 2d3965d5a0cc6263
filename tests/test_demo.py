"""`make run`'s demo keeps one named folder that each run empties, instead of a new temp folder
(~200 MB at the default size) per run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def _demo(tmpdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "weightvault.demo", "--size", "1MiB", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "TMPDIR": str(tmpdir)},
        timeout=600,
    )


def test_demo_reuses_its_folder(tmp_path: Path) -> None:
    previous = tmp_path / "weightvault-demo"  # what an earlier run left
    previous.mkdir()
    (previous / ".weightvault-demo").write_text("")
    (previous / "leftover.bin").write_bytes(b"x" * 1000)
    r = _demo(tmp_path)
    assert r.returncode == 0, r.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["weightvault-demo"]
    assert not (previous / "leftover.bin").exists() and (previous / "vault").is_dir()
    assert str(previous) in r.stdout


def test_demo_refuses_a_folder_it_did_not_make(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "precious.txt").write_text("keep")
    r = _demo(tmp_path, "--workdir", str(mine))
    assert r.returncode == 2 and "not a previous demo" in r.stderr
    assert (mine / "precious.txt").read_text() == "keep"
