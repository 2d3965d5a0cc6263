"""``weightvault keys``: init, status, rotate, and one-line errors that name the key provider."""

from __future__ import annotations

import json
from pathlib import Path

from weightvault.keys.env import generate_key_text
from weightvault.keys.local_file import LocalFileKeyProvider

from ..conftest import run_cli as wv
from ..conftest import tree_bytes


def encrypted_home(tmp_path: Path, provider: str = "") -> Path:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.yaml").write_text("encryption:\n  enabled: true\n" + provider)
    return home


def test_init_status_rotate_reencrypt(tmp_path: Path, model_dir: Path) -> None:
    home = encrypted_home(tmp_path)
    r = wv(home, "keys", "init", "--json")
    assert r.returncode == 0, r.stderr
    init = json.loads(r.stdout)
    key_file = home / "keys" / "kek.key"
    assert init["created_key_file"] == str(key_file) and key_file.stat().st_mode & 0o777 == 0o600
    assert wv(home, "push", "m", str(model_dir), "--version", "v1", "-q").returncode == 0

    status = json.loads(wv(home, "keys", "status", "--json").stdout)
    (entry,) = status["models"]
    assert entry["encrypted"] and entry["kek_id"] == init["kek_id"] and list(entry["live"]) == ["1"]
    table = wv(home, "keys", "status")
    assert table.returncode == 0 and "m" in table.stdout and "active" in table.stdout

    r = wv(home, "keys", "rotate")
    assert r.returncode == 0, r.stderr
    assert f"keys re-wrapped from KEK {init['kek_id']}" in r.stderr and "the old one is gone" in r.stderr
    r = wv(home, "keys", "rotate", "m", "--reencrypt", "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["models"]["m"]["reencrypt"]["dropped_slots"] == [1]
    status = json.loads(wv(home, "keys", "status", "m", "--json").stdout)
    assert [k["slot"] for k in status["models"][0]["data_keys"]] == [2]
    assert list(status["models"][0]["live"]) == ["2"]
    assert wv(home, "pull", "m@v1", str(tmp_path / "out"), "-q").returncode == 0
    assert tree_bytes(tmp_path / "out") == tree_bytes(model_dir)


def test_wrong_key_is_one_line_naming_the_provider(tmp_path: Path, model_dir: Path) -> None:
    home = encrypted_home(tmp_path)
    assert wv(home, "push", "m", str(model_dir), "-q").returncode == 0
    LocalFileKeyProvider.create(tmp_path / "other.key")
    (home / "keys" / "kek.key").write_bytes((tmp_path / "other.key").read_bytes())
    for args in (("push", "m", str(model_dir)), ("pull", "m", str(tmp_path / "out")), ("keys", "rotate")):
        r = wv(home, *args)
        assert r.returncode == 7, (args, r.stderr)
        line = r.stderr.strip()
        assert (
            line.startswith("error: key provider 'local_file'")
            and "\n" not in line
            and "Traceback" not in line
        )


def test_env_provider_rotation_needs_the_new_key(tmp_path: Path, model_dir: Path) -> None:
    home = encrypted_home(tmp_path, "  provider:\n    type: env\n    variable: WV_CLI_KEK\n")
    env = {"WV_CLI_KEK": generate_key_text(), "WV_CLI_KEK2": generate_key_text()}
    assert wv(home, "push", "m", str(model_dir), "-q", env=env).returncode == 0
    r = wv(home, "keys", "rotate", env=env)
    assert r.returncode == 4 and "--new-key-env" in r.stderr
    r = wv(home, "keys", "rotate", "--new-key-env", "WV_CLI_KEK2", "--new-key-file", "x", env=env)
    assert r.returncode == 4 and "at most one" in r.stderr
    r = wv(home, "keys", "rotate", "--new-key-env", "WV_CLI_KEK2", env=env)
    assert r.returncode == 0, r.stderr
    assert "set encryption.provider in your config" in r.stderr
    # the keyring records where its key is now; the old variable no longer opens it
    r = wv(home, "pull", "m", str(tmp_path / "out"), "-q", env={"WV_CLI_KEK2": env["WV_CLI_KEK2"]})
    assert r.returncode == 0, r.stderr
    r = wv(home, "pull", "m", str(tmp_path / "out2"), env={"WV_CLI_KEK": env["WV_CLI_KEK"]})
    assert r.returncode == 7 and "'env'" in r.stderr and "WV_CLI_KEK2" in r.stderr


def test_missing_env_variable(tmp_path: Path, model_dir: Path) -> None:
    home = encrypted_home(tmp_path, "  provider:\n    type: env\n    variable: WV_CLI_KEK\n")
    r = wv(home, "push", "m", str(model_dir))
    assert r.returncode == 7 and "key provider 'env'" in r.stderr and "WV_CLI_KEK" in r.stderr
    assert not list((home / "store").glob("packs/*/*"))
