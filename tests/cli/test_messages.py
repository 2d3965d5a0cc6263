"""What the CLI says when things go wrong (and right): one line, the right exit code, the path or
setting named, nothing repeated, nothing cut."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from weightvault.core import layout

from ..conftest import run_cli
from .inproc import wv_in


def _one_error_line(stderr: str) -> str:
    """The whole stderr must be exactly one line starting with ``error: `` (no blank line before)."""
    assert stderr.endswith("\n") and stderr.count("\n") == 1, repr(stderr)
    assert stderr.startswith("error: "), repr(stderr)
    return stderr


def test_os_errors_are_one_line_naming_the_path(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    assert wv_in(capsys, home, "push", "m", str(model_dir), "-q").returncode == 0

    r = wv_in(capsys, home, "pull", "m", "/proc/wv-test/x")
    assert r.returncode == 7 and "/proc/wv-test" in _one_error_line(r.stderr)

    a_file = tmp_path / "file"
    a_file.write_text("x")
    r = wv_in(capsys, a_file, "ls")
    assert r.returncode == 4 and str(a_file) in _one_error_line(r.stderr)
    r = wv_in(capsys, a_file / "home", "ls")  # a home under a file cannot be created
    assert r.returncode == 4 and str(a_file) in _one_error_line(r.stderr)
    r = wv_in(capsys, Path("/proc/wv-home"), "ls")
    assert r.returncode == 7 and "/proc/wv-home" in _one_error_line(r.stderr)

    loop = tmp_path / "loop"
    loop.mkdir()
    (loop / "weights.bin").write_bytes(b"w" * 100)
    (loop / "a").symlink_to("b")
    (loop / "b").symlink_to("a")
    r = wv_in(capsys, home, "push", "looped", str(loop))
    assert r.returncode == 4 and "loop" in _one_error_line(r.stderr) and str(loop) in r.stderr

    cfg = tmp_path / "db.yaml"
    cfg.write_text("database_url: nonsense://x\n")
    r = wv_in(capsys, tmp_path / "h2", "--config", str(cfg), "ls")
    assert r.returncode == 4 and "database_url" in _one_error_line(r.stderr) and "nonsense://x" in r.stderr


def test_permission_denied_names_the_file(tmp_path: Path, model_dir: Path) -> None:
    secret = model_dir / "secret.bin"
    secret.write_bytes(b"s" * 1000)
    secret.chmod(0)
    prefix: list[str] = []
    if os.geteuid() == 0:  # root reads anything: take away its capability to override file modes
        setpriv = shutil.which("setpriv")
        assert setpriv is not None, "setpriv (util-linux) is needed to run this test as root"
        prefix = [setpriv, "--bounding-set=-dac_override,-dac_read_search"]
    r = subprocess.run(
        [
            *prefix,
            sys.executable,
            "-m",
            "weightvault.cli.app",
            "--home",
            str(tmp_path / "h"),
            "push",
            "m",
            str(model_dir),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 7, r.stderr
    assert "Permission denied" in _one_error_line(r.stderr) and str(secret) in r.stderr
    assert "Traceback" not in r.stderr


def test_errors_after_progress_starts_are_still_one_line(tmp_path: Path, model_dir: Path) -> None:
    """The progress bar is for terminals and never leaves a line (or a blank one) before an error."""
    home = tmp_path / "home"
    assert run_cli(home, "push", "m", str(model_dir)).returncode == 0
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "config.json").write_text("different")
    r = run_cli(home, "pull", "m", str(tmp_path / "out"))
    assert r.returncode == 5 and "config.json" in _one_error_line(r.stderr)


def test_rm_without_version_is_invalid_input(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    wv_in(capsys, home, "push", "m", str(model_dir), "-q")
    r = wv_in(capsys, home, "rm", "m")
    assert r.returncode == 4 and "MODEL@VERSION" in _one_error_line(r.stderr)
    assert len(json.loads(wv_in(capsys, home, "ls", "m", "--json").stdout)["versions"]) == 1


def test_gc_says_its_grace_period(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    wv_in(capsys, home, "push", "m", str(model_dir), "-q")
    r = wv_in(capsys, home, "gc")
    assert r.returncode == 0 and "grace period of 1h" in r.stderr
    r = wv_in(capsys, home, "gc", "--grace", "90")
    assert "grace period of 1m30s" in r.stderr
    assert json.loads(wv_in(capsys, home, "gc", "--json").stdout)["grace_seconds"] == 3600


def test_verify_names_each_problem_once(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    wv_in(capsys, home, "push", "tm2", str(model_dir), "--version", "v1", "-q")
    for pack in (home / "store" / "packs").rglob("*"):
        if pack.is_file():
            data = bytearray(pack.read_bytes())
            data[len(data) // 2] ^= 1
            pack.write_bytes(bytes(data))
    r = wv_in(capsys, home, "verify", "--read-data")
    assert r.returncode == 6
    lines = r.stderr.strip().splitlines()
    assert lines and all(line.startswith("tm2@v1:") for line in lines), r.stderr
    assert not any("tm2@v1: tm2@v1" in line for line in lines), r.stderr


def test_piped_tables_keep_identifiers_whole(tmp_path: Path, model_dir: Path) -> None:
    home = tmp_path / "home"
    name = "an-organisation-with-a-long-name/a-model-name-that-is-long-too"
    label = "v1.0.0-release-candidate-with-a-long-label"
    assert run_cli(home, "push", name, str(model_dir), "--version", label, "-q").returncode == 0
    commit = json.loads(run_cli(home, "show", f"{name}@{label}", "--json").stdout)["commit"]
    listing = run_cli(home, "ls", env={"COLUMNS": "80"}).stdout  # stdout is a pipe here
    assert name in listing and label in listing
    versions = run_cli(home, "ls", name).stdout
    assert label in versions and commit in versions
    shown = run_cli(home, "show", f"{name}@{label}").stdout
    sha = json.loads(run_cli(home, "show", f"{name}@{label}", "--json").stdout)["files"][0]["sha256"]
    assert commit in shown and sha in shown


def test_rm_of_an_alias_is_refused_and_says_what_to_do(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    wv_in(capsys, home, "push", "m", str(model_dir), "--version", "v1", "-q")
    wv_in(capsys, home, "alias", "set", "m", "production", "v1")
    wv_in(capsys, home, "alias", "set", "m", "staging", "v1")
    r = wv_in(capsys, home, "rm", "m@production")
    assert r.returncode == 4
    line = _one_error_line(r.stderr)
    assert "alias of m@v1" in line and "alias rm m production" in line and "rm m@v1" in line
    info = json.loads(wv_in(capsys, home, "ls", "m", "--json").stdout)
    assert [v["label"] for v in info["versions"]] == ["v1"]
    assert info["aliases"] == {"production": "v1", "staging": "v1"}

    r = wv_in(capsys, home, "rm", "m@v1")
    assert r.returncode == 0
    assert "deleted m@v1" in r.stderr and "aliases production, staging" in r.stderr
    models = json.loads(wv_in(capsys, home, "ls", "--json").stdout)
    assert all(m["versions"] == [] for m in models if m["name"] == "m")


def test_rm_primary_only_leaves_the_replicas(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    archive = tmp_path / "archive"
    home.mkdir()
    (home / "config.yaml").write_text(f"replicas:\n  archive: {archive.as_uri()}\n")
    assert wv_in(capsys, home, "push", "m", str(model_dir), "--version", "v1", "-q").returncode == 0
    assert wv_in(capsys, home, "push", "m", str(model_dir), "--version", "v2", "-q").returncode == 0
    v1, v2 = layout.version_ref_key("m", "v1"), layout.version_ref_key("m", "v2")
    assert (archive / v1).is_file() and (archive / v2).is_file()

    assert wv_in(capsys, home, "rm", "m@v1", "--primary-only").returncode == 0
    assert (archive / v1).is_file() and not (home / "store" / v1).exists()
    assert wv_in(capsys, home, "rm", "m@v2").returncode == 0
    assert not (archive / v2).exists() and not (home / "store" / v2).exists()


def test_pull_include_matching_nothing_warns_and_fails(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    wv_in(capsys, home, "push", "m", str(model_dir), "--version", "v1", "-q")
    r = wv_in(capsys, home, "pull", "m@v1", str(tmp_path / "out"), "--include", "*.gguf")
    assert r.returncode == 3
    assert "warning: --include '*.gguf' matches no file of m@v1" in r.stderr
    assert not (tmp_path / "out").exists()
    r = wv_in(
        capsys, home, "pull", "m@v1", str(tmp_path / "o2"), "--include", "*.json", "--include", "*.gguf"
    )
    assert r.returncode == 0 and "'*.gguf' matches no file" in r.stderr
    assert [p.name for p in (tmp_path / "o2").iterdir()] == ["config.json"]


def test_push_reports_unchanged_and_refuses_empty(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    assert wv_in(capsys, home, "push", "m", str(model_dir), "--version", "v1").returncode == 0
    commit = json.loads(wv_in(capsys, home, "show", "m@v1", "--json").stdout)["commit"]
    r = wv_in(capsys, home, "push", "m", str(model_dir))
    assert r.returncode == 0 and f"unchanged, same as v1 (commit {commit})" in r.stderr
    assert json.loads(wv_in(capsys, home, "push", "m", str(model_dir), "--json").stdout)["unchanged"] is True
    assert wv_in(capsys, home, "push", "m", str(model_dir), "--version", "v2", "-q").returncode == 0
    assert len(json.loads(wv_in(capsys, home, "ls", "m", "--json").stdout)["versions"]) == 2

    empty = tmp_path / "empty"
    (empty / ".git").mkdir(parents=True)
    (empty / ".git" / "config").write_text("[core]\n")
    r = wv_in(capsys, home, "push", "e", str(empty))
    assert r.returncode == 4 and "--allow-empty" in _one_error_line(r.stderr)
    r = wv_in(capsys, home, "push", "e", str(empty), "--allow-empty", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["version"]["file_count"] == 0
    r = wv_in(capsys, home, "push", "e", str(empty), "--no-default-ignores", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["version"]["file_count"] == 1
