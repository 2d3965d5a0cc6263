"""``pull --link-mode`` and the pull summary's account of how files were placed."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..conftest import run_cli as wv
from ..conftest import tree_bytes
from ..vault.test_link_modes import clones_work


def test_pull_says_how_files_were_placed(tmp_path: Path, model_dir: Path) -> None:
    home = tmp_path / "home"
    assert wv(home, "push", "m", str(model_dir), "-q").returncode == 0
    # a clone fills the cache; a copy from this local store is written once, straight from the store
    how = "reflink" if clones_work(tmp_path / "probe") else "direct write"
    r = wv(home, "pull", "m", str(tmp_path / "a"))
    assert r.returncode == 0, r.stderr
    assert f"placed 4 by {how}" in r.stderr
    r = wv(home, "pull", "m", str(tmp_path / "b"), "--link-mode", "hardlink", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["link_mode"] == "hardlink" and out["placement"] == {"hardlink": 4}
    assert os.stat(tmp_path / "b" / "config.json").st_nlink >= 2
    r = wv(home, "pull", "m", str(tmp_path / "b"), "--json")  # everything is already there
    assert json.loads(r.stdout)["placement"] == {}
    assert "placed nothing" in wv(home, "pull", "m", str(tmp_path / "b")).stderr
    assert tree_bytes(tmp_path / "a") == tree_bytes(tmp_path / "b") == tree_bytes(model_dir)


def test_unknown_link_modes_are_one_line_errors(tmp_path: Path, model_dir: Path) -> None:
    home = tmp_path / "home"
    assert wv(home, "push", "m", str(model_dir), "-q").returncode == 0
    r = wv(home, "pull", "m", str(tmp_path / "out"), "--link-mode", "symlink")
    assert r.returncode == 4 and len(r.stderr.strip().splitlines()) == 1
    assert "symlink" in r.stderr and "auto, reflink, hardlink, copy" in r.stderr
    assert not (tmp_path / "out").exists()
    (home / "config.yaml").write_text("link_mode: clone\n")
    r = wv(home, "pull", "m", str(tmp_path / "out"))
    assert r.returncode == 4 and len(r.stderr.strip().splitlines()) == 1 and "link_mode" in r.stderr
    assert not (tmp_path / "out").exists()
