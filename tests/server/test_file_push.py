"""Remote pushes in whole files against a real server: encrypted models (the server holds the
keys and seals what it stores) and float-aware compression (stored exactly as an embedded push
stores it). Bad uploads change nothing; read tokens cannot upload; interrupted uploads resume."""

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
from weightvault.core.errors import AccessDeniedError
from weightvault.demo.synthetic import generate_model
from weightvault.testing.proxy import CuttingProxy
from weightvault.testing.server import ServerProcess

from ..conftest import run_cli, tree_bytes
from ..vault.test_encryption import SENTINEL, sentinel_model
from .conftest import Served

API = "/api/v1"


def _serve(tmp: Path, config: str) -> Iterator[Served]:
    home = tmp / "home"
    home.mkdir(parents=True)
    (home / "config.yaml").write_text(config)
    with Vault.open(home) as v:
        admin = v.access.create_token("root", "admin", admin=True).token
    with ServerProcess(home, env={"WEIGHTVAULT_GC_GRACE_SECONDS": "0"}) as proc:
        yield Served(proc.url, home, admin, proc)


@pytest.fixture(scope="module")
def enc_served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    yield from _serve(tmp_path_factory.mktemp("enc"), "encryption:\n  enabled: true\n")


@pytest.fixture(scope="module")
def float_served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    yield from _serve(tmp_path_factory.mktemp("float"), "compression: float\n")


def _client(served: Served, token: str | None = None) -> httpx.Client:
    return httpx.Client(
        base_url=served.url + API, headers={"Authorization": f"Bearer {token or served.admin}"}, timeout=60
    )


def _upload_metric(served: Served) -> float:
    text = httpx.get(served.url + "/metrics", timeout=10).text
    line = next(x for x in text.splitlines() if x.startswith("weightvault_upload_file_bytes_total"))
    return float(line.split()[-1])


def _state(served: Served) -> tuple[Any, ...]:
    """What a bad request must not change: the index, every object of the store, the versions."""
    with served.local() as v:
        root = v.settings.store_path
        store = {
            p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))
            if p.is_file() and "/locks/" not in f"/{p.relative_to(root).as_posix()}"
        }
        return v.index.stats(), store, {m.name: [x.label for x in m.versions] for m in v.list_models()}


def _spools(served: Served) -> list[str]:
    root = served.home / "tmp" / "uploads"
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def test_encrypted_model_round_trips_and_the_bucket_holds_no_plaintext(
    enc_served: Served, tmp_path: Path
) -> None:
    src = sentinel_model(tmp_path / "src", 3_000_000)
    with Vault.open(enc_served.url, token=enc_served.admin) as remote:
        mode = remote.http.json("GET", "/models/org/secret/-/upload-mode")
        assert mode["mode"] == "files" and mode["encrypted"]
        first = remote.push("org/secret", src, version="v1", message="sealed by the server")
        total = sum(p.stat().st_size for p in src.rglob("*") if p.is_file())
        assert first.bytes_written == total and first.version.file_count == 3
        remote.pull("org/secret@v1", tmp_path / "out")
        assert tree_bytes(tmp_path / "out") == tree_bytes(src)

        # the second push of the same files sends no file byte and makes no version
        before = _upload_metric(enc_served)
        again = remote.push("org/secret", src)
        assert again.unchanged and again.version.label == "v1" and again.bytes_written == 0
        assert _upload_metric(enc_served) == before
        # one changed file: only its bytes travel
        (src / "config.json").write_text(json.dumps({"note": SENTINEL.decode("latin-1"), "v": 2}))
        second = remote.push("org/secret", src, version="v2")
        assert second.bytes_written == (src / "config.json").stat().st_size
        assert _upload_metric(enc_served) == before + second.bytes_written
        remote.pull("org/secret@v2", tmp_path / "out2")
        assert tree_bytes(tmp_path / "out2") == tree_bytes(src)
    assert _spools(enc_served) == []  # no plaintext left on the server's disk either

    with enc_served.local() as local:  # what an operator sees next to the store
        dom = local.keys.domain("org/secret")
        assert dom is not None
        root = local.settings.store_path
        objects = {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}
        assert any(k.startswith("packs/") for k in objects)
        for key, data in objects.items():
            assert SENTINEL not in data and SENTINEL[:12] not in data, key
        shas = {f.sha256 for ref in ("org/secret@v1", "org/secret@v2") for f in local.show(ref).files}
        assert not any(sha in k or sha.encode() in d for k, d in objects.items() for sha in shas)
        # every blob is sealed, and chunk ids are the model's keyed ones
        for pack in local.index.packs():
            for _cid, loc in local.index.chunks_in_pack(pack.id):
                assert loc.codec & ENCRYPTED and loc.key_slot in dom.slots
        # an embedded push of the same files next to the server finds them all (same keyed ids)
        same = local.push("org/secret", src)
        assert same.unchanged and same.chunks_new == 0


def test_the_chunk_routes_refuse_models_that_take_whole_files(enc_served: Served) -> None:
    with _client(enc_served) as c:
        r = c.post("/models/org/other/-/chunks/missing", json={"ids": ["00" * 32]})
        assert r.status_code == 400 and r.json()["code"] == "config_error"
        body = {"files": [{"path": "a", "size": 1, "sha256": "0" * 64, "chunks": [["00" * 32, 1]]}]}
        r = c.post("/models/org/other/-/versions", json=body)
        assert r.status_code == 400 and r.json()["code"] == "config_error"


def _open(c: httpx.Client, model: str, path: str, data: bytes, sha: str | None = None) -> str:
    r = c.post(
        f"/models/{model}/-/uploads",
        json={"path": path, "size": len(data), "sha256": sha or hashlib.sha256(data).hexdigest()},
    )
    assert r.status_code == 201, r.text
    assert r.json()["offset"] == 0 and not r.json()["complete"]
    return str(r.json()["id"])


def test_bad_uploads_change_nothing_and_an_interrupted_one_resumes(enc_served: Served) -> None:
    data = b"".join(hashlib.sha256(str(i).encode()).digest() for i in range(40_000)) + SENTINEL
    sha = hashlib.sha256(data).hexdigest()
    model = "org/bad"
    url = f"/models/{model}/-/uploads"
    with _client(enc_served) as c:
        c.post(f"/models/{model}/-/files/missing", json={"files": []}).raise_for_status()  # keys made
        before = _state(enc_served)

        # a digest that does not match: refused once the file is complete, the session dropped
        sid = _open(c, model, "w.bin", data, sha="0" * 64)
        r = c.put(f"{url}/{sid}", params={"offset": 0}, content=data)
        assert r.status_code == 400 and r.json()["code"] == "digest_mismatch"
        assert c.get(f"{url}/{sid}").status_code == 404
        # a body longer than announced: refused up front (Content-Length) or as it streams
        sid = _open(c, model, "w.bin", data)
        r = c.put(f"{url}/{sid}", params={"offset": 0}, content=data + b"x")
        assert r.status_code == 413 and r.json()["code"] == "payload_too_large"
        r = c.put(f"{url}/{sid}", params={"offset": 0}, content=iter([data[:100_000], data[100_000:], b"xy"]))
        assert r.status_code == 413 and r.json()["code"] == "payload_too_large"
        assert c.get(f"{url}/{sid}").json()["offset"] == 0  # nothing of it was kept
        # a wrong offset is a conflict that says where the upload is
        r = c.put(f"{url}/{sid}", params={"offset": 5}, content=data[5:])
        assert r.status_code == 409 and "offset 0" in r.json()["message"]
        # a body shorter than its Content-Length: the client went away mid-upload
        half = len(data) // 2
        with socket.create_connection(("127.0.0.1", enc_served.process.port)) as sock:
            head = (
                f"PUT {API}{url}/{sid}?offset=0 HTTP/1.1\r\nHost: x\r\n"
                f"Authorization: Bearer {enc_served.admin}\r\nContent-Length: {len(data)}\r\n\r\n"
            ).encode()
            sock.sendall(head + data[:half])
            sock.shutdown(socket.SHUT_WR)
            sock.recv(65536)
        offset = c.get(f"{url}/{sid}").json()["offset"]
        assert 0 < offset <= half  # what arrived is kept for a resume
        # a commit naming a file the vault does not hold
        commit = {"files": [{"path": "w.bin", "size": len(data), "sha256": sha}], "version": "v1"}
        r = c.post(f"/models/{model}/-/versions/from-uploads", json=commit)
        assert r.status_code == 409 and r.json()["code"] == "not_uploaded"
        assert _state(enc_served) == before

        # the rest of the interrupted upload completes it: stored, then committed
        r = c.put(f"{url}/{sid}", params={"offset": offset}, content=data[offset:])
        assert r.status_code == 200 and r.json()["complete"], r.text
        missing = c.post(f"/models/{model}/-/files/missing", json={"files": commit["files"]})
        assert missing.json()["missing"] == []
        r = c.post(f"/models/{model}/-/versions/from-uploads", json=commit)
        assert r.status_code == 201, r.text
        got = c.get(f"/models/{model}/-/versions/v1/files/w.bin")
        assert got.status_code == 200 and got.content == data
        sid = _open(c, model, "gone.bin", data)  # an abandoned session is removed with its spool
        assert c.delete(f"{url}/{sid}").status_code == 204 and c.get(f"{url}/{sid}").status_code == 404
    assert _spools(enc_served) == []


def test_a_read_token_cannot_upload(enc_served: Served, tmp_path: Path) -> None:
    with enc_served.local() as v:
        reader = v.access.create_token("reader", "read").token
        v.access.add_grant("reader", "org/*", "writer")  # the grant allows more than the token's scope
    data = b"r" * 1000
    sha = hashlib.sha256(data).hexdigest()
    with _client(enc_served) as admin:  # a session the reader will try to write to (makes the keys)
        sid = _open(admin, "org/ro", "r.bin", data)
    before = _state(enc_served)
    with _client(enc_served, reader) as c:
        assert c.get("/models/org/ro/-/upload-mode").status_code == 403
        files = {"files": [{"path": "r.bin", "size": len(data), "sha256": sha}]}
        assert c.post("/models/org/ro/-/files/missing", json=files).status_code == 403
        r = c.post("/models/org/ro/-/uploads", json=files["files"][0])
        assert r.status_code == 403 and r.json()["code"] == "forbidden"
        assert c.put(f"/models/org/ro/-/uploads/{sid}", params={"offset": 0}, content=data).status_code == 403
        assert c.get(f"/models/org/ro/-/uploads/{sid}").status_code == 403
        assert c.post("/models/org/ro/-/versions/from-uploads", json=files).status_code == 403
        with _client(enc_served) as admin:
            assert admin.get(f"/models/org/ro/-/uploads/{sid}").json()["offset"] == 0  # nothing arrived
            assert admin.delete(f"/models/org/ro/-/uploads/{sid}").status_code == 204
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "r.bin").write_bytes(data)
    with Vault.open(enc_served.url, token=reader) as remote, pytest.raises(AccessDeniedError):
        remote.push("org/ro", tmp_path / "m")
    assert _state(enc_served) == before
    with enc_served.local() as v:  # every refusal is in the audit log
        denied = {(e.action, e.outcome) for e in v.access.audit_log(principal="reader", model="org/ro")}
    assert {("upload", "denied"), ("push", "denied")} <= denied


def _codecs(v: Vault, model: str, label: str) -> dict[bytes, tuple[int, int, int]]:
    """chunk id -> (codec, stored length, raw length) of every chunk of a version."""
    out = {}
    for f in v.show(f"{model}@{label}").files:
        ids = [c for c, _ in v.file_recipe(model, f.sha256).chunks]
        for cid, loc in v.index.locate_chunks(ids).items():
            out[cid] = (loc.codec, loc.stored_len, loc.raw_len)
    return out


def test_float_compression_is_applied_to_remote_pushes(
    float_served: Served, tmp_path: Path, home: Path
) -> None:
    src = tmp_path / "src"
    generate_model(src, 6 << 20, shards=2, dtype="bf16")
    with Vault.open(float_served.url, token=float_served.admin) as remote:
        assert remote.http.json("GET", "/models/f/-/upload-mode")["mode"] == "files"
        remote.push("f", src, version="v1")
        remote.pull("f@v1", tmp_path / "out")
    assert tree_bytes(tmp_path / "out") == tree_bytes(src)
    with float_served.local() as served_vault:
        remote_codecs = _codecs(served_vault, "f", "v1")
    with Vault.open(home, compression="float") as embedded:  # the same files, pushed embedded
        embedded.push("f", src, version="v1")
        embedded_codecs = _codecs(embedded, "f", "v1")
    assert remote_codecs == embedded_codecs
    assert any(codec == 3 for codec, _, _ in remote_codecs.values())  # FLOAT_PLANES: the layout was used
    # the chunk protocol would have stored them as plain zstd: it is refused for this vault
    with _client(float_served) as c:
        r = c.post("/models/f/-/chunks/missing", json={"ids": ["00" * 32]})
        assert r.status_code == 400 and r.json()["code"] == "config_error"


def test_a_broken_file_upload_resumes_from_the_servers_offset(enc_served: Served, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    data = b"".join(hashlib.sha256(str(i).encode()).digest() for i in range(250_000))  # 8 MB
    (src / "big.bin").write_bytes(data)
    proxy = CuttingProxy(enc_served.process.port, "/uploads/", cut_after=3_000_000, cut_method="PUT")
    with proxy, Vault.open(proxy.url, token=enc_served.admin) as remote:
        result = remote.push("org/resumed", src, version="v1")
        remote.pull("org/resumed@v1", tmp_path / "out")
    assert (tmp_path / "out" / "big.bin").read_bytes() == data
    puts = [s for s in proxy.seen if s.method == "PUT"]
    # a second PUT may be refused while the server still finishes the broken one (409
    # upload_busy / upload_offset); every retry must resume, none may start the file over
    assert proxy.cuts == 1 and len(puts) >= 2
    assert puts[0].path.endswith("?offset=0")
    assert not any(p.path.endswith("?offset=0") for p in puts[1:])  # resumed
    assert result.bytes_written < 2 * len(data)  # the part that arrived was not sent again
    assert _spools(enc_served) == []


def test_cli_pushes_an_encrypted_model_through_the_server(enc_served: Served, tmp_path: Path) -> None:
    src = sentinel_model(tmp_path / "src", 400_000)
    env = {"WEIGHTVAULT_SERVER": enc_served.url, "WEIGHTVAULT_TOKEN": enc_served.admin}
    home = tmp_path / "client-home"  # the client's home: no keys are made or needed here
    pushed = run_cli(home, "push", "org/cli", str(src), "--version", "v1", "-q", env=env)
    assert pushed.returncode == 0, pushed.stderr
    pulled = run_cli(home, "pull", "org/cli@v1", str(tmp_path / "out"), "-q", env=env)
    assert pulled.returncode == 0, pulled.stderr
    assert tree_bytes(tmp_path / "out") == tree_bytes(src)
    assert not (home / "keys").exists()
    with enc_served.local() as local:
        assert local.keys.domain("org/cli") is not None
