"""Whole-file upload sessions across server processes: two ``serve`` processes with their own
homes share one index (a SQLite file, then PostgreSQL), one store and one key provider, as
behind a load balancer. A session opened on one continues on the other; an encrypted push whose
requests alternate between them ends in a verified version both serve; a resume on the other
process restarts at 0; another principal's session does not exist; a client whose upload keeps
breaking off stops with a typed error and commits nothing."""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from weightvault import Vault
from weightvault.core.errors import UploadIncompleteError
from weightvault.testing.balancer import RoundRobinBalancer
from weightvault.testing.server import ServerProcess

from ..conftest import new_postgres_database, tree_bytes
from ..vault.test_encryption import SENTINEL

API = "/api/v1"
KEK = {"WV_STATELESS_KEK": base64.b64encode(os.urandom(32)).decode()}


@dataclass
class Pair:
    a: ServerProcess
    b: ServerProcess
    admin: str
    alice: str
    bob: str
    shared: Path

    def spools(self) -> list[Path]:
        return [p for s in (self.a, self.b) for p in (s.home / "tmp" / "uploads").glob("*.part")]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def pair(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    shared = tmp_path_factory.mktemp("shared")
    url = f"sqlite:///{shared / 'index.db'}" if request.param == "sqlite" else new_postgres_database(request)
    config = {
        "database_url": url,
        "store_url": (shared / "store").as_uri(),
        "encryption": {"enabled": True, "provider": {"type": "env", "variable": "WV_STATELESS_KEK"}},
    }
    homes = [shared / "a" / "home", shared / "b" / "home"]
    for home in homes:  # each process its own home (spools, cache), the rest shared
        home.mkdir(parents=True)
        (home / "config.yaml").write_text(yaml.safe_dump(config))
    with Vault.open(homes[0]) as v:
        admin = v.access.create_token("root", "admin", admin=True).token
        alice = v.access.create_token("alice", "write").token
        bob = v.access.create_token("bob", "write").token
        for who in ("alice", "bob"):
            v.access.add_grant(who, "team/*", "writer")
    env = {**KEK, "WEIGHTVAULT_GC_GRACE_SECONDS": "0"}
    with ServerProcess(homes[0], env=env) as a, ServerProcess(homes[1], env=env) as b:
        yield Pair(a, b, admin, alice, bob, shared)


def _client(server: ServerProcess, token: str) -> httpx.Client:
    return httpx.Client(base_url=server.url + API, headers={"Authorization": f"Bearer {token}"}, timeout=120)


def _data(n: int) -> bytes:
    return b"".join(hashlib.sha256(f"{n}:{i}".encode()).digest() for i in range(n // 32)) + SENTINEL


def _pull_from_both(pair: Pair, ref: str, tmp: Path) -> list[Path]:
    outs = []
    for name, server in (("a", pair.a), ("b", pair.b)):
        with Vault.open(server.url, token=pair.admin) as v:
            v.pull(ref, tmp / f"out-{name}")
            report = v.verify(ref, read_data=True)
            assert report.problems == [] and report.checked_versions == 1
        outs.append(tmp / f"out-{name}")
    return outs


def test_an_encrypted_push_alternating_between_processes_is_stored_once_and_served_by_both(
    pair: Pair, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "weights.bin").write_bytes(_data(3_000_000))
    with RoundRobinBalancer([pair.a.port, pair.b.port]) as lb, Vault.open(lb.url, token=pair.admin) as v:
        result = v.push("team/rr", src, version="v1")
    assert result.version.file_count == 1
    opened = [r for r in lb.routed if r.method == "POST" and r.path.endswith("/-/uploads")]
    sent = [r for r in lb.routed if r.method == "PUT" and "/-/uploads/" in r.path]
    commit = [r for r in lb.routed if r.path.endswith("/-/versions/from-uploads")]
    assert len(opened) == len(sent) == len(commit) == 1
    # opened on one process, its bytes taken (whole, first time) and stored by the other
    assert sent[0].upstream != opened[0].upstream and sent[0].path.endswith("?offset=0")
    assert result.bytes_written == (src / "weights.bin").stat().st_size
    for out in _pull_from_both(pair, "team/rr@v1", tmp_path):
        assert tree_bytes(out) == tree_bytes(src)
    assert pair.spools() == []
    for p in (pair.shared / "store").rglob("*"):  # sealed by the servers: no plaintext in the store
        assert not p.is_file() or SENTINEL not in p.read_bytes()


def test_a_resume_on_the_other_process_restarts_at_zero_and_completes(pair: Pair, tmp_path: Path) -> None:
    data = _data(2_000_000)
    sha = hashlib.sha256(data).hexdigest()
    model, path = "team/moved", "w.bin"
    with _client(pair.a, pair.admin) as a, _client(pair.b, pair.admin) as b:
        r = a.post(f"/models/{model}/-/uploads", json={"path": path, "size": len(data), "sha256": sha})
        assert r.status_code == 201, r.text
        url = f"/models/{model}/-/uploads/{r.json()['id']}"
        # half the file reaches a, then the connection breaks
        with socket.create_connection(("127.0.0.1", pair.a.port)) as sock:
            sock.sendall(
                f"PUT {API}{url}?offset=0 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {pair.admin}\r\n"
                f"Content-Length: {len(data)}\r\n\r\n".encode()
                + data[: len(data) // 2]
            )
            sock.shutdown(socket.SHUT_WR)
            sock.recv(65536)
        held = a.get(url).json()["offset"]
        assert held > 0  # a can continue ...
        assert b.get(url).json()["offset"] == 0  # ... b holds none of it: it continues from 0
        r = b.put(url, params={"offset": held}, content=data[held:])
        assert r.status_code == 409 and r.json()["code"] == "upload_offset"
        assert "offset 0" in r.json()["message"]
        r = b.put(url, params={"offset": 0}, content=data)
        assert r.status_code == 200 and r.json()["complete"], r.text
        assert a.get(url).status_code == 404  # finished: the session is gone on every process
        files = [{"path": path, "size": len(data), "sha256": sha}]
        r = a.post(f"/models/{model}/-/versions/from-uploads", json={"files": files, "version": "v1"})
        assert r.status_code == 201, r.text  # committed on the process that did not store it
        assert a.get(f"/models/{model}/-/versions/v1/files/{path}").content == data
        # a's half spool goes when a next opens a session (its session is gone)
        assert len(pair.spools()) == 1
        r = a.post(f"/models/{model}/-/uploads", json={"path": "x", "size": 1, "sha256": "0" * 64})
        a.delete(f"/models/{model}/-/uploads/{r.json()['id']}").raise_for_status()
    assert pair.spools() == []
    for out in _pull_from_both(pair, f"{model}@v1", tmp_path):
        assert (out / path).read_bytes() == data


def test_the_client_follows_offset_zero_after_a_break_on_another_process(pair: Pair, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    data = _data(4_000_000)
    (src / "big.bin").write_bytes(data)
    balancer = RoundRobinBalancer([pair.a.port, pair.b.port], cut_path="/-/uploads/", cut_after=1_500_000)
    with balancer as lb, Vault.open(lb.url, token=pair.admin) as v:
        result = v.push("team/broken", src, version="v1")
    assert lb.cuts == 1
    puts = [r for r in lb.routed if r.method == "PUT"]
    asked = [r for r in lb.routed if r.method == "GET" and "/-/uploads/" in r.path]
    assert len(puts) == 2 and len(asked) == 1
    # the break left part of the file on one process; the offset was asked of the other, which
    # holds none of it: the client started again from 0 and the file completed
    assert asked[0].upstream != puts[0].upstream
    assert all(p.path.endswith("?offset=0") for p in puts)
    assert len(data) < result.bytes_written <= 2 * len(data)
    for out in _pull_from_both(pair, "team/broken@v1", tmp_path):
        assert (out / "big.bin").read_bytes() == data
    assert pair.spools() == []


def test_an_upload_that_keeps_breaking_stops_with_a_typed_error(pair: Pair, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "w.bin").write_bytes(_data(1_000_000))
    balancer = RoundRobinBalancer(  # every upload request breaks
        [pair.a.port, pair.b.port], cut_path="/-/uploads/", cut_after=100_000, max_cuts=1000
    )
    with balancer as lb, Vault.open(lb.url, token=pair.admin) as v:
        with pytest.raises(UploadIncompleteError, match="did not complete"):
            v.push("team/never", src, version="v1")
        puts = [r for r in lb.routed if r.method == "PUT"]
        assert 1 < len(puts) <= 8  # bounded retries, not a loop
        assert "team/never" not in [m.name for m in v.list_models()]  # nothing was committed
    # the client gave the session up: a process drops its part when the broken request ends
    # there, or at its next sweep
    for _ in range(300):
        for server in (pair.a, pair.b):
            with _client(server, pair.admin) as c:
                r = c.post("/models/team/never/-/uploads", json={"path": "x", "size": 1, "sha256": "0" * 64})
                c.delete(f"/models/team/never/-/uploads/{r.json()['id']}").raise_for_status()
        if not pair.spools():
            break
        time.sleep(0.1)  # a broken request may still be ending on its server
    assert pair.spools() == []


def test_another_principals_session_does_not_exist_and_grants_are_checked_on_every_call(
    pair: Pair,
) -> None:
    data = _data(200_000)
    sha = hashlib.sha256(data).hexdigest()
    model = "team/owned"
    with _client(pair.a, pair.alice) as alice_a, _client(pair.b, pair.alice) as alice_b:
        r = alice_a.post(f"/models/{model}/-/uploads", json={"path": "w", "size": len(data), "sha256": sha})
        assert r.status_code == 201, r.text
        url = f"/models/{model}/-/uploads/{r.json()['id']}"
        assert alice_b.get(url).json()["offset"] == 0  # hers, on the other process too
        with _client(pair.b, pair.bob) as bob:  # bob may write the model, but the session is alice's
            assert bob.get(url).json()["code"] == "upload_not_found"
            r = bob.put(url, params={"offset": 0}, content=data)
            assert r.status_code == 404 and r.json()["code"] == "upload_not_found"
            assert bob.delete(url).status_code == 404
        with Vault.open(pair.a.home) as local:  # alice loses write access on the model
            local.access.add_grant("alice", "team/*", "reader")
        try:
            r = alice_b.put(url, params={"offset": 0}, content=data)
            assert r.status_code == 403 and r.json()["code"] == "forbidden"
            assert alice_b.get(url).status_code == 403
        finally:
            with Vault.open(pair.a.home) as local:
                local.access.add_grant("alice", "team/*", "writer")
        r = alice_b.put(url, params={"offset": 0}, content=data)  # allowed again: still her session
        assert r.status_code == 200 and r.json()["complete"], r.text
    assert pair.spools() == []
