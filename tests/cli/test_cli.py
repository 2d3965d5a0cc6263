"""The command line as a user meets it: one-line errors with distinct exit codes, JSON on reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ..conftest import run_cli as wv
from ..conftest import tree_bytes


def test_workflow_from_the_issue(tmp_path: Path, model_dir: Path) -> None:
    home = tmp_path / "home"
    assert wv(home, "push", "llama-7b", str(model_dir), "-q").returncode == 0
    r = wv(
        home,
        "push",
        "llama-7b",
        str(model_dir),
        "--version",
        "v1.0.0",
        "--message",
        "first",
        "--meta",
        "team=nlp",
    )
    assert r.returncode == 0, r.stderr
    assert "pushed llama-7b@v1.0.0" in r.stderr
    listing = json.loads(wv(home, "ls", "llama-7b", "--json").stdout)
    labels = [v["label"] for v in listing["versions"]]
    assert labels[0] == "v1.0.0" and len(labels) == 2 and labels[1].isdigit()
    shown = json.loads(wv(home, "show", "llama-7b@v1.0.0", "--json").stdout)
    assert shown["metadata"] == {"team": "nlp"} and shown["message"] == "first"
    assert {f["path"] for f in shown["files"]} == set(tree_bytes(model_dir))
    assert all(len(f["sha256"]) == 64 for f in shown["files"])
    assert wv(home, "pull", "llama-7b", str(tmp_path / "deployed"), "-q").returncode == 0
    assert tree_bytes(tmp_path / "deployed") == tree_bytes(model_dir)
    r = wv(
        home,
        "pull",
        "llama-7b@v1.0.0",
        str(tmp_path / "out"),
        "--include",
        "*.safetensors",
        "--exclude",
        "*-00002-of-*",
    )
    assert r.returncode == 0 and sorted(tree_bytes(tmp_path / "out")) == ["model-00001-of-00002.safetensors"]
    assert wv(home, "alias", "set", "llama-7b", "production", "v1.0.0").returncode == 0
    # a hardlink pull fills the cache (a copy from this local store would not: ``cache_fill``)
    prod = ("llama-7b@production", str(tmp_path / "prod"), "-q", "--link-mode", "hardlink")
    assert wv(home, "pull", *prod, cmd="wv").returncode == 0
    assert wv(home, "rm", f"llama-7b@{labels[1]}").returncode == 0
    assert wv(home, "verify", "--read-data").returncode == 0
    assert wv(home, "gc").returncode == 0
    (home / "index.db").unlink()
    assert wv(home, "recover").returncode == 0
    assert json.loads(wv(home, "ls", "--json").stdout)[0]["versions"][0]["label"] == "v1.0.0"
    cache = json.loads(wv(home, "cache", "ls", "--json").stdout)
    assert cache["enabled"] and cache["total_bytes"] > 0
    assert wv(home, "cache", "prune", "--max-size-gb", "0").returncode == 0
    assert json.loads(wv(home, "cache", "ls", "--json").stdout)["total_bytes"] == 0


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (("show", "nope"), 3, "model 'nope' not found"),
        (("show", "m@nope"), 3, "revision 'nope'"),
        (("push", "bad..name", "SRC"), 4, "invalid model name"),
        (("push", "m", "/does/not/exist"), 4, "does not exist"),
        (("push", "m", "SRC", "--version", "v1"), 5, "already exists"),
        (("pull", "m", "FILE"), 5, "not a folder"),
        (("push", "m", "SRC", "--meta", "novalue"), 4, "key=value"),
    ],
)
def test_errors_are_one_line_with_distinct_exit_codes(
    tmp_path: Path, model_dir: Path, args: tuple[str, ...], code: int, needle: str
) -> None:
    home = tmp_path / "home"
    assert wv(home, "push", "m", str(model_dir), "--version", "v1", "-q").returncode == 0
    (tmp_path / "file").write_text("x")
    real = [a.replace("SRC", str(model_dir)).replace("FILE", str(tmp_path / "file")) for a in args]
    r = wv(home, *real)
    assert r.returncode == code, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    assert (tmp_path / "file").read_text() == "x"


def test_verify_exits_non_zero_on_corruption(tmp_path: Path, model_dir: Path) -> None:
    home = tmp_path / "home"
    wv(home, "push", "m", str(model_dir), "-q")
    pack = next((home / "store" / "packs").rglob("*"))
    while pack.is_dir():
        pack = next(pack.iterdir())
    data = bytearray(pack.read_bytes())
    data[0] ^= 1
    pack.write_bytes(bytes(data))
    r = wv(home, "verify", "--read-data", "--json")
    assert r.returncode == 6
    report = json.loads(r.stdout)
    assert not report["ok"] and list(report["affected_versions"]) == [
        f"m@{json.loads(wv(home, 'ls', 'm', '--json').stdout)['versions'][0]['label']}"
    ]


def test_config_file_and_environment(tmp_path: Path, model_dir: Path) -> None:
    cfg = tmp_path / "wv.yaml"
    cfg.write_text(
        f"model_weights:\n  cache_enabled: true\n  cache_directory: {tmp_path / 'c'}\n  cache_fill: always\n"
    )
    home = tmp_path / "home"
    wv(home, "push", "m", str(model_dir), "-q", env={"WEIGHTVAULT_CONFIG": str(cfg)})
    wv(home, "pull", "m", str(tmp_path / "o"), "-q", env={"WEIGHTVAULT_CONFIG": str(cfg)})
    assert list((tmp_path / "c" / "files").rglob("*"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("cache_max_size_gb: lots\n")
    r = wv(home, "ls", env={"WEIGHTVAULT_CONFIG": str(bad)})
    assert r.returncode == 4 and "cache_max_size_gb" in r.stderr
    r = wv(tmp_path / "envhome", "ls", "--json", env={"WEIGHTVAULT_HOME": str(home)})
    assert r.returncode == 0


def test_version(tmp_path: Path) -> None:
    r = wv(tmp_path / "h", "--version")
    assert r.returncode == 0 and r.stdout.strip().startswith("weightvault ")
