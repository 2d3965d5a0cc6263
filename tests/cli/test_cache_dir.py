"""``--cache-dir`` puts the pull cache where the user says (cluster scratch space), not in the home."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .inproc import wv_in


def _files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def test_pull_fills_the_cache_dir_given_on_the_command_line(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    home, scratch = tmp_path / "home", tmp_path / "scratch"
    assert wv_in(capsys, home, "push", "m", str(model_dir), "-q").returncode == 0
    monkeypatch.chdir(tmp_path)  # a relative --cache-dir is taken from the working folder
    # a hardlink pull fills the cache (a copy from this local store would not: ``cache_fill``)
    pull = ("pull", "m", str(tmp_path / "out"), "-q", "--link-mode", "hardlink")
    r = wv_in(capsys, home, "--cache-dir", "scratch", *pull)
    assert r.returncode == 0, r.stderr
    cached = _files_under(scratch)
    assert cached, "the pull did not fill the cache folder it was given"
    assert not _files_under(home / "cache"), "the home's default cache was used despite --cache-dir"
    names = {p.name for p in cached}
    pulled = {p.name for p in (tmp_path / "out").rglob("*") if p.is_file()}
    assert len(names) >= len(pulled) > 0

    listed = wv_in(capsys, home, "--cache-dir", str(scratch), "cache", "ls", "--json")
    default = wv_in(capsys, home, "cache", "ls", "--json")
    assert listed.returncode == 0 and default.returncode == 0
    entries, empty = json.loads(listed.stdout), json.loads(default.stdout)
    assert len(entries["entries"]) == len(cached) and not empty["entries"]


def test_cache_dir_with_a_server_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    r = wv_in(capsys, tmp_path / "home", "--server", "http://127.0.0.1:9", "--cache-dir", "x", "ls")
    assert r.returncode == 4 and "--cache-dir" in r.stderr and r.stderr.count("\n") == 1
