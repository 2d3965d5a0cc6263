"""The remote SDK and CLI against a real server: the embedded vault's API, over HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from weightvault import Vault
from weightvault.client import RemoteVault
from weightvault.core.errors import (
    ConfigError,
    DestinationConflictError,
    ModelNotFoundError,
    RevisionNotFoundError,
    VersionExistsError,
)

from ..conftest import run_cli, tree_bytes, write_random
from .conftest import Served


def test_push_pull_roundtrip_with_dedup_against_embedded_pushes(
    served: Served, model_dir: Path, tmp_path: Path
) -> None:
    with served.local() as local:  # pushed next to the server, embedded
        local.push("org/base", model_dir, version="v1")
    with Vault.open(served.url, token=served.admin) as remote:
        assert isinstance(remote, RemoteVault)
        (model_dir / "tokenizer" / "vocab.bin").write_bytes(b"x" * 1000)
        result = remote.push("org/base", model_dir, version="v2", message="remote", metadata={"k": "v"})
        # only the changed file's chunks travelled: the others were already in the store
        assert result.chunks_new == 1 and result.chunks_total > 3
        assert result.version.label == "v2" and result.version.parent is not None
        with pytest.raises(VersionExistsError):
            remote.push("org/base", model_dir, version="v2")
        again = remote.push("org/base", model_dir)  # same files, no label: no new version
        assert again.unchanged and again.version.label == "v2"
        pulled = remote.pull("org/base@v2", tmp_path / "out")
        assert tree_bytes(tmp_path / "out") == tree_bytes(model_dir)
        assert pulled.bytes_from_store == pulled.bytes_total
        only = remote.pull("org/base@v1", tmp_path / "cfg", include=["*.json"])
        assert only.files == ("config.json",)
        info = remote.show("org/base@v2")
        assert info.metadata == {"k": "v"} and info.message == "remote" and len(info.files) == 4
        assert [v.label for v in remote.list_versions("org/base")] == ["v2", "v1"]
        remote.set_alias("org/base", "production", "v1")
        assert remote.resolve("org/base@production").label == "v1"
        assert remote.model("org/base").aliases == {"production": "v1"}
        remote.remove_alias("org/base", "production")
        with pytest.raises(RevisionNotFoundError):
            remote.show("org/base@production")
        with pytest.raises(ModelNotFoundError):
            remote.show("org/none@v1")
        assert remote.verify("org/base@v2", read_data=True).ok
        deleted = remote.delete("org/base@v2")
        assert deleted.label == "v2" and [v.label for v in remote.list_versions("org/base")] == ["v1"]
        with pytest.raises(ConfigError, match="not available through a server"):
            remote.rotate_keys()  # recover, sync, repair run on the server: test_ops_api


def test_pull_resumes_a_partial_download_and_replaces_a_bad_one(served: Served, tmp_path: Path) -> None:
    src = tmp_path / "src"
    data = write_random(src / "w.bin", 6_000_000, seed=9).read_bytes()
    with Vault.open(served.url, token=served.admin) as remote:
        remote.push("resume", src, version="v1")
        dest = tmp_path / "dest"
        dest.mkdir()
        sha = remote.show("resume@v1").files[0].sha256
        part = dest / f".w.bin.{sha[:16]}.wv-part"
        part.write_bytes(data[:4_000_000])  # an interrupted earlier pull
        result = remote.pull("resume@v1", dest)
        assert (dest / "w.bin").read_bytes() == data and not part.exists()
        assert result.bytes_from_store == 2_000_000  # only the rest came over the network (Range)
        (dest / "w.bin").unlink()
        part.write_bytes(b"garbage" + data[7:3_000_000])  # a bad part: the SHA-256 check fails
        result = remote.pull("resume@v1", dest)  # its bytes are dropped, the file fetched again whole
        assert (dest / "w.bin").read_bytes() == data and not part.exists()
        assert result.bytes_from_store == 3_000_000 + 6_000_000
        (dest / "w.bin").write_bytes(b"different")
        with pytest.raises(DestinationConflictError):
            remote.pull("resume@v1", dest)


def test_http_range_requests(served: Served, tmp_path: Path) -> None:
    src = tmp_path / "src"
    data = write_random(src / "a.bin", 3_000_000, seed=4).read_bytes()
    with Vault.open(served.url, token=served.admin) as remote:
        remote.push("ranges", src, version="v1")
    url = f"{served.url}/api/v1/models/ranges/-/versions/v1/files/a.bin"
    auth = {"Authorization": f"Bearer {served.admin}"}
    for header, want in [
        ("bytes=0-9", data[:10]),
        ("bytes=1048570-1048590", data[1048570:1048591]),
        ("bytes=-5", data[-5:]),
        ("bytes=2999990-", data[2999990:]),
    ]:
        r = httpx.get(url, headers={**auth, "Range": header})
        assert r.status_code == 206 and r.content == want, header
        assert r.headers["content-range"].endswith("/3000000")
    whole = httpx.get(url, headers=auth)
    assert whole.status_code == 200 and whole.content == data and whole.headers["accept-ranges"] == "bytes"
    bad = httpx.get(url, headers={**auth, "Range": "bytes=3000000-"})
    assert bad.status_code == 416 and bad.json()["code"] == "range_not_satisfiable"
    head = httpx.head(url, headers=auth)
    assert head.status_code == 200 and head.headers["content-length"] == "3000000"


def test_cli_works_through_the_server(served: Served, model_dir: Path, tmp_path: Path) -> None:
    env = {"WEIGHTVAULT_SERVER": served.url, "WEIGHTVAULT_TOKEN": served.admin}
    home = tmp_path / "unused-home"
    pushed = run_cli(home, "push", "clim", str(model_dir), "--version", "v1", "-q", env=env)
    assert pushed.returncode == 0, pushed.stderr
    listed = json.loads(run_cli(home, "ls", "--json", env=env).stdout)
    assert "clim" in json.dumps(listed)
    pulled = run_cli(
        home,
        "--server",
        served.url,
        "pull",
        "clim@v1",
        str(tmp_path / "o"),
        "-q",
        env={"WEIGHTVAULT_TOKEN": served.admin},
    )
    assert pulled.returncode == 0, pulled.stderr
    assert tree_bytes(tmp_path / "o") == tree_bytes(model_dir)
    missing = run_cli(home, "show", "clim@nope", env=env)
    assert missing.returncode == 3 and missing.stderr.count("\n") == 1
    made = run_cli(home, "token", "create", "-p", "bot", "--scope", "read", "--json", env=env)
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["principal"] == "bot"
    assert not home.exists()  # nothing was opened locally


def test_a_remote_push_is_checked_like_an_embedded_one(served: Served, tmp_path: Path) -> None:
    """The server scans pickles and validates safetensors files as it reads the upload back."""
    import pickle

    from weightvault.core.errors import MalformedFileError, UnsafeFileError

    class Runs:
        def __reduce__(self) -> tuple[object, ...]:
            return (exec, ("raise SystemExit",))

    src = tmp_path / "ckpt"
    src.mkdir()
    (src / "training_args.bin").write_bytes(pickle.dumps(Runs(), protocol=4))
    (src / "config.json").write_text("{}")
    with Vault.open(served.url, token=served.admin) as remote:
        with pytest.raises(UnsafeFileError):
            remote.push("scanned", src, version="v1", refuse_unsafe=True)
        info = remote.push("scanned", src, version="v1").version
        assert remote.show("scanned@v1").safety["training_args.bin"]["verdict"] == "dangerous"
        assert info.label == "v1"
        bad = tmp_path / "bad"
        bad.mkdir()
        (bad / "model.safetensors").write_bytes((100).to_bytes(8, "little") + b"{not json" + b" " * 91)
        with pytest.raises(MalformedFileError):
            remote.push("scanned", bad, version="v2")
        assert [v.label for v in remote.list_versions("scanned")] == ["v1"]
