"""Uploads with the real ``huggingface_hub`` client to models the server ingests itself: an
encrypted model (sealed by the server, no plaintext in the store) and a ``compression: float``
vault (float-aware codecs applied). The store must hold what an embedded push of the same files
holds; a bad LFS upload changes nothing, and a good one is invisible until its commit."""

from __future__ import annotations

import hashlib
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from weightvault import Vault
from weightvault.cas.compression import ENCRYPTED
from weightvault.core.errors import ConfigError
from weightvault.demo.synthetic import generate_model

from ..conftest import tree_bytes
from ..vault.test_encryption import SENTINEL, sentinel_model
from .conftest import Served
from .test_file_push import _codecs, _serve, _state
from .test_hub_api import hf


@pytest.fixture(scope="module")
def enc_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    yield from _serve(tmp_path_factory.mktemp("enc"), "encryption:\n  enabled: true\n")


@pytest.fixture(scope="module")
def float_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    yield from _serve(tmp_path_factory.mktemp("float"), "compression: float\n")


UPLOAD = """
import json
from pathlib import Path
import huggingface_hub as hh
from huggingface_hub import CommitOperationAdd

api = hh.HfApi()
folder = Path(FOLDER)
api.upload_file(path_or_fileobj=b"first", path_in_repo="first.txt", repo_id=REPO)
api.create_commit(REPO, [CommitOperationAdd("empty.txt", b"")], commit_message="inline")
info = api.upload_folder(folder_path=folder, repo_id=REPO, commit_message="weights",
                         delete_patterns=["first.txt", "empty.txt"])
snap = Path(hh.snapshot_download(REPO, revision=info.oid))
print(json.dumps({
    "oid": info.oid,
    "snapshot": {
        p.relative_to(snap).as_posix(): p.read_bytes().hex() for p in snap.rglob("*") if p.is_file()
    },
}))
"""


def _upload(served: Served, tmp: Path, repo: str, folder: Path) -> dict[str, Any]:
    script = UPLOAD.replace("FOLDER", repr(str(folder))).replace("REPO", repr(repo))
    return hf(served, tmp / "hf", script, served.admin, extra={"HF_HUB_DISABLE_XET": "1"})  # type: ignore[no-any-return]


def _leftovers(served: Served) -> list[str]:
    root = served.home / "tmp" / "uploads"
    return sorted(p.name for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_hub_uploads_to_an_encrypted_model_are_sealed_as_an_embedded_push(
    enc_hub: Served, tmp_path: Path
) -> None:
    src = sentinel_model(tmp_path / "src", 2_000_000)
    out = _upload(enc_hub, tmp_path, "org/hubsecret", src)
    assert {k: bytes.fromhex(v) for k, v in out["snapshot"].items()} == tree_bytes(src)
    assert _leftovers(enc_hub) == []  # no plaintext left on the server's disk
    with enc_hub.local() as local:
        dom = local.keys.domain("org/hubsecret")
        assert dom is not None
        assert local.show("org/hubsecret").commit == out["oid"]
        root = local.settings.store_path
        objects = {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}
        assert any(k.startswith("packs/") for k in objects)
        for key, data in objects.items():
            assert SENTINEL not in data and SENTINEL[:12] not in data, key
        for pack in local.index.packs():
            for _cid, loc in local.index.chunks_in_pack(pack.id):
                assert loc.codec & ENCRYPTED and loc.key_slot in dom.slots
        # an embedded push of the same files finds every chunk and recipe (same keyed ids)
        same = local.push("org/hubsecret", src)
        assert same.unchanged and same.chunks_new == 0


def test_hub_uploads_on_a_float_vault_use_float_codecs(float_hub: Served, tmp_path: Path, home: Path) -> None:
    src = tmp_path / "src"
    generate_model(src, 6 << 20, shards=2, dtype="bf16")
    out = _upload(float_hub, tmp_path, "org/f", src)
    assert {k: bytes.fromhex(v) for k, v in out["snapshot"].items()} == tree_bytes(src)
    with float_hub.local() as served_vault:
        label = served_vault.show("org/f").label
        hub_codecs = _codecs(served_vault, "org/f", label)
    with Vault.open(home, compression="float") as embedded:  # the same files, pushed embedded
        embedded.push("f", src, version="v1")
        embedded_codecs = _codecs(embedded, "f", "v1")
    assert hub_codecs == embedded_codecs
    assert any(codec == 3 for codec, _, _ in hub_codecs.values())  # FLOAT_PLANES: the layout was used
    assert _leftovers(float_hub) == []


def _commit(served: Served, model: str, path: str, oid: str) -> httpx.Response:
    lines = [
        {"key": "header", "value": {"summary": "w"}},
        {"key": "lfsFile", "value": {"path": path, "algo": "sha256", "oid": oid}},
    ]
    return httpx.post(
        f"{served.url}/api/models/{model}/commit/main",
        content=b"".join(json.dumps(x).encode() + b"\n" for x in lines),
        headers={"Authorization": f"Bearer {served.admin}", "Content-Type": "application/x-ndjson"},
        timeout=60,
    )


def test_a_bad_lfs_upload_changes_nothing_and_a_good_one_waits_for_its_commit(enc_hub: Served) -> None:
    data = b"".join(hashlib.sha256(str(i).encode()).digest() for i in range(40_000)) + SENTINEL
    oid = hashlib.sha256(data).hexdigest()
    model = "org/lfsbad"
    auth = {"Authorization": f"Bearer {enc_hub.admin}"}
    body = {"operation": "upload", "transfers": ["basic"], "objects": [{"oid": oid, "size": len(data)}]}

    def batch() -> dict[str, Any]:
        r = httpx.post(f"{enc_hub.url}/{model}.git/info/lfs/objects/batch", json=body, headers=auth)
        assert r.status_code == 200, r.text
        return r.json()["objects"][0]  # type: ignore[no-any-return]

    href = batch()["actions"]["upload"]["href"]  # the model's keys are made here
    before = _state(enc_hub)
    # the Hub's error format: status, X-Error-Message, a JSON error
    r = httpx.put(href, content=data[:-1] + b"x")
    assert r.status_code == 400 and "does not hash" in r.headers["x-error-message"] and r.json()["error"]
    r = httpx.put(href, content=data + b"x")
    assert r.status_code == 413 and "longer than" in r.headers["x-error-message"]
    r = httpx.put(href, content=iter([data[:100_000], data[100_000:-1]]))  # chunked, one byte short
    assert r.status_code == 400 and "not the" in r.headers["x-error-message"]
    half = len(data) // 2
    port = int(enc_hub.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as sock:  # the client goes away mid-body
        target = href.split(str(port), 1)[1]
        head = f"PUT {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(data)}\r\n\r\n".encode()
        sock.sendall(head + data[:half])
        sock.shutdown(socket.SHUT_WR)
        sock.recv(65536)
    assert "actions" in batch()  # nothing was kept
    r = _commit(enc_hub, model, "w.bin", oid)
    assert r.status_code == 400 and "upload it first" in r.headers["x-error-message"]
    assert _state(enc_hub) == before and _leftovers(enc_hub) == []

    assert httpx.put(href, content=data).status_code == 200
    assert "actions" not in batch()  # verified and kept: not asked for again
    assert _state(enc_hub) == before  # but nothing is in the store before the commit names its path
    r = _commit(enc_hub, model, "w.bin", oid)
    assert r.status_code == 200, r.text
    got = httpx.get(f"{enc_hub.url}/{model}/resolve/main/w.bin", headers=auth)
    assert got.status_code == 200 and got.content == data
    assert _leftovers(enc_hub) == []
    with enc_hub.local() as local:  # stored sealed
        packs = [p.read_bytes() for p in local.settings.store_path.rglob("*") if p.is_file()]
        assert packs and all(SENTINEL not in d for d in packs)


def test_the_byte_stream_path_refuses_a_float_vault(home: Path) -> None:
    """Chunked as it streams, a file has no tensor layout: a float vault would get plain zstd."""
    data = b"x" * 1000
    with Vault.open(home, compression="float") as v, pytest.raises(ConfigError, match="whole files"):
        v.put_file("m", [data], hashlib.sha256(data).hexdigest(), len(data))
    with Vault.open(home) as v:
        assert v.index.stats()["chunks"] == 0
