"""``import hf``: a repo of a Hub endpoint (here another vault server acting as the upstream Hub)
imported at a pinned commit, through the real ``huggingface_hub`` client."""

from __future__ import annotations

from pathlib import Path

import pytest

from weightvault.core.errors import AccessDeniedError, InvalidInputError, RevisionNotFoundError
from weightvault.hub.remote import check_endpoint, import_hf
from weightvault.vault.vault import Vault

from ..conftest import run_cli, tree_bytes, write_random
from .conftest import Served


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080",
        "http://localhost:8080",
        "http://169.254.169.254/latest",
        "http://10.1.2.3",
        "http://192.168.0.1",
        "http://[::1]:80",
        "http://[fe80::1]:80",
    ],
)
def test_private_endpoints_are_refused_unless_allowed(url: str) -> None:
    with pytest.raises(AccessDeniedError):
        check_endpoint(url, allow_private=False)
    assert check_endpoint(url + "/", allow_private=True) == url


def test_endpoint_urls_are_checked() -> None:
    assert check_endpoint("https://8.8.8.8/", allow_private=False) == "https://8.8.8.8"
    for bad in ("ftp://8.8.8.8", "file:///etc/passwd", "http://user:pw@8.8.8.8", "http://8.8.8.8/?x=1"):
        with pytest.raises(InvalidInputError):
            check_endpoint(bad, allow_private=True)


def test_import_hf_pins_commits_and_is_idempotent(served: Served, tmp_path: Path) -> None:
    src = tmp_path / "up"
    write_random(src / "model.safetensors", 2_000_000, seed=1)
    (src / "config.json").write_text('{"a": 1}')
    (src / "tokenizer.json").write_text("{}")
    with served.local() as up:
        v1 = up.push("org/up", src, version="v1").version
        up.set_alias("org/up", "stable", "v1")
        v1_tree = tree_bytes(src)
        (src / "config.json").write_text('{"a": 2}')
        v2 = up.push("org/up", src, version="v2").version
    home = tmp_path / "home"
    env = {"HF_TOKEN": served.admin, "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HOME": str(tmp_path / "hf")}
    argv = ("import", "hf", "org/up", "--revision", "stable", "--endpoint", served.url)

    refused = run_cli(home, *argv, env=env)
    assert refused.returncode != 0 and "import_allow_private_endpoints" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    with Vault.open(home) as v:
        assert v.model_names() == []

    env["WEIGHTVAULT_IMPORT_ALLOW_PRIVATE_ENDPOINTS"] = "true"
    first = run_cli(home, *argv, env=env)
    assert first.returncode == 0, first.stderr
    assert "imported org/up@" in first.stderr and f"from org/up@{v1.commit[:12]}" in first.stderr
    again = run_cli(home, *argv, env=env)
    assert again.returncode == 0 and "already imported as" in again.stderr
    with Vault.open(home) as v:
        (only,) = v.list_versions("org/up")
        info = v.show(f"org/up@{only.commit}")
        assert info.lineage[0]["repo"] == "org/up" and info.lineage[0]["commit"] == v1.commit
        assert info.lineage[0]["revision"] == "stable" and info.lineage[0]["endpoint"] == served.url
        v.pull(f"org/up@{only.commit}", tmp_path / "got")
        assert tree_bytes(tmp_path / "got") == v1_tree

    with served.local() as up:  # the branch moves upstream: the next import is a new version
        up.set_alias("org/up", "stable", "v2")
    with Vault.open(home, import_allow_private_endpoints=True) as v:
        moved = import_hf(v, "org/up", revision="stable", endpoint=served.url, token=served.admin)
        assert moved.imported and moved.upstream is not None and moved.upstream["commit"] == v2.commit
        assert v.show(f"org/up@{moved.version.commit}").lineage[0]["commit"] == v2.commit
        assert moved.version.parent == only.commit
        stats_before = v.stats()
        part = import_hf(
            v,
            "org/up",
            revision=v2.commit,
            include=["*.json"],
            exclude=["tok*"],
            name="up-cfg",
            endpoint=served.url,
            token=served.admin,
        )
        assert [f.path for f in v.show(f"up-cfg@{part.version.commit}").files] == ["config.json"]
        assert v.stats()["chunks"] == stats_before["chunks"]  # nothing new to store: config.json is there
        same = import_hf(
            v,
            "org/up",
            revision=v2.commit,
            include=["*.json"],
            exclude=["tok*"],
            name="up-cfg",
            endpoint=served.url,
            token=served.admin,
        )
        assert not same.imported and same.version.commit == part.version.commit
        with pytest.raises(RevisionNotFoundError):
            import_hf(v, "org/up", revision="nope", endpoint=served.url, token=served.admin)
        assert [x.label for x in v.list_versions("up-cfg")] == [part.version.label]
