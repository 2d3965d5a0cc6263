"""Hostile and malformed requests: each gets a 4xx JSON {code, message} and changes nothing."""

from __future__ import annotations

import http.client
import json
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest

from weightvault import Vault
from weightvault.cas.hashing import chunk_id

from .conftest import Served


def _raw(
    served: Served, method: str, path: str, headers: dict[str, str] | None = None, body: bytes | None = None
) -> tuple[int, dict[str, Any]]:
    """A request sent exactly as written: no client-side normalisation of the path."""
    conn = http.client.HTTPConnection("127.0.0.1", served.process.port, timeout=30)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for k, v in {"Authorization": f"Bearer {served.admin}", **(headers or {})}.items():
            conn.putheader(k, v)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        conn.close()


def _state(served: Served) -> tuple[Any, ...]:
    with served.local() as v:
        store = sorted(
            p.relative_to(v.settings.store_path).as_posix()
            for p in v.settings.store_path.rglob("*")
            if p.is_file()
        )
        return v.index.stats(), store, {m.name: [x.label for x in m.versions] for m in v.list_models()}


@pytest.fixture(scope="module")
def seeded(served: Served, tmp_path_factory: pytest.TempPathFactory) -> Served:
    src = tmp_path_factory.mktemp("bad") / "m"
    src.mkdir()
    (src / "w.bin").write_bytes(b"w" * 100_000)
    with Vault.open(served.url, token=served.admin) as v:
        v.push("safe", src, version="v1")
    return served


TRAVERSALS = [
    "/api/v1/models/safe/-/versions/v1/files/..%2f..%2fetc%2fpasswd",
    "/api/v1/models/safe/-/versions/v1/files/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/api/v1/models/safe/-/versions/v1/files/%252e%252e%252fetc%252fpasswd",
    "/api/v1/models/safe/-/versions/v1/files/%2fetc%2fpasswd",
    "/api/v1/models/safe/-/versions/v1/files//etc/passwd",
    "/api/v1/models/safe/-/versions/v1/files/..%5c..%5cwindows",
    "/api/v1/models/safe/-/versions/v1/files/C:%5cwindows%5cwin.ini",
    "/api/v1/models/safe/-/versions/v1/files/%5c%5cserver%5cshare%5cx",
    "/api/v1/models/safe/-/versions/v1/files/w.bin%00.txt",
    "/api/v1/models/safe/-/versions/v1/files/w.bin;jsessionid=1",
    "/api/v1/models/safe/-/versions/..%2fv1/files/w.bin",
    "/api/v1/models/..%2fsafe/-/versions/v1",
    "/api/v1/models/%2e%2e/-/versions/v1",
    "/api/v1/models/safe%00/-/versions/v1",
    "/api/v1/models/safe;x=1/-/versions/v1",
    "/api/v1/models/a%5cb/-/versions/v1",
    "/api/v1/models/" + "a" * 300 + "/-/versions/v1",
    "/api/v1/models/safe/-/versions/" + "v" * 300,
    "/api/v1/models/safe/-/aliases/..%2fx",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_hostile_paths_are_refused_with_json(seeded: Served, path: str) -> None:
    before = _state(seeded)
    for method in ("GET", "DELETE", "PUT"):
        status, body = _raw(
            seeded,
            method,
            path,
            {"Content-Type": "application/json"},
            b'{"revision": "v1"}' if method == "PUT" else None,
        )
        assert 400 <= status < 500, (method, path, status, body)
        assert set(body) == {"code", "message"} and body["message"], body
    assert _state(seeded) == before


def test_oversize_headers_and_bodies(seeded: Served) -> None:
    before = _state(seeded)
    status, body = _raw(seeded, "GET", "/api/v1/models", {"X-Big": "x" * 20_000})
    assert status == 431 and body["code"] == "headers_too_large"
    status, body = _raw(
        seeded,
        "POST",
        "/api/v1/models/safe/-/chunks",
        {"Content-Length": str(1 << 40), "Content-Type": "application/octet-stream"},
    )
    assert status == 413 and body["code"] == "payload_too_large"
    huge_frame = b"\x00" * 32 + (64 << 20).to_bytes(4, "big") + b"x" * 100
    status, body = _raw(seeded, "POST", "/api/v1/models/safe/-/chunks", body=huge_frame)
    assert status == 413 and body["code"] == "payload_too_large"
    status, body = _raw(
        seeded,
        "POST",
        "/api/v1/models/safe/-/versions",
        {"Content-Type": "application/json"},
        json.dumps(
            {"files": [{"path": "f", "size": 1, "sha256": "a" * 64, "chunks": [["b" * 64, 1]]}] * 100_001}
        ).encode(),
    )
    assert status in (413, 422) and body["code"] in ("payload_too_large", "invalid_input")
    assert _state(seeded) == before


def test_digest_mismatches_and_broken_uploads_change_nothing(seeded: Served) -> None:
    before = _state(seeded)
    data = b"some chunk bytes" * 1000
    wrong_id = chunk_id(b"other bytes")
    frame = wrong_id + len(data).to_bytes(4, "big") + data
    good = chunk_id(data) + len(data).to_bytes(4, "big") + data
    other = b"another chunk" * 1000
    good_other = chunk_id(other) + len(other).to_bytes(4, "big") + other

    def missing() -> set[str]:
        with Vault.open(seeded.url, token=seeded.admin) as v:
            return {c.hex() for c in v.missing_chunks("safe", [chunk_id(data), chunk_id(other)])}

    everything = {chunk_id(data).hex(), chunk_id(other).hex()}
    status, body = _raw(seeded, "POST", "/api/v1/models/safe/-/chunks", body=good + frame)
    assert status == 400 and body["code"] == "digest_mismatch"
    assert missing() == everything  # the good chunk before the bad one was not kept either
    status, body = _raw(seeded, "POST", "/api/v1/models/safe/-/chunks", body=good + good_other[:-10])
    assert status == 400 and body["code"] == "invalid_input"  # the body ends inside a frame
    assert missing() == everything
    # a body shorter than its Content-Length: the client goes away mid-upload
    with socket.create_connection(("127.0.0.1", seeded.process.port)) as sock:
        head = (
            "POST /api/v1/models/safe/-/chunks HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {seeded.admin}\r\n"
            f"Content-Length: {len(good) * 3}\r\n\r\n"
        ).encode()
        sock.sendall(head + good_other + good)
        sock.shutdown(socket.SHUT_WR)
        sock.recv(65536)
    assert missing() == everything
    # a file whose chunks exist but whose SHA-256 is a lie
    status, body = _raw(seeded, "POST", "/api/v1/models/safe/-/chunks", body=good)
    assert status == 200
    lie = {
        "files": [
            {
                "path": "f.bin",
                "size": len(data),
                "sha256": "0" * 64,
                "chunks": [[chunk_id(data).hex(), len(data)]],
            }
        ],
        "version": "v9",
    }
    status, body = _raw(
        seeded,
        "POST",
        "/api/v1/models/safe/-/versions",
        {"Content-Type": "application/json"},
        json.dumps(lie).encode(),
    )
    assert status == 400 and body["code"] == "digest_mismatch"
    after_stats, _, after_models = _state(seeded)
    assert after_models == before[2]  # no version appeared
    assert after_stats["versions"] == before[0]["versions"]
    assert after_stats["chunks"] == before[0]["chunks"] + 1  # only the one good, complete upload was kept


def test_unknown_routes_and_methods_answer_json(seeded: Served) -> None:
    r = httpx.get(f"{seeded.url}/api/v1/nothing-here")
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    r = httpx.patch(f"{seeded.url}/api/v1/models")
    assert r.status_code == 405 and r.json()["code"] == "method_not_allowed"
    r = httpx.post(
        f"{seeded.url}/api/v1/models/safe/-/versions",
        content=b"{not json",
        headers={"Authorization": f"Bearer {seeded.admin}", "Content-Type": "application/json"},
    )
    assert r.status_code == 422 and r.json()["code"] == "invalid_input"
    r = httpx.get(f"{seeded.url}/api/v1/models", headers={"Authorization": "Basic abc"})
    assert r.status_code == 401 and r.json()["code"] == "unauthenticated"


def test_metrics_count_requests_and_bytes(seeded: Served, tmp_path: Path) -> None:
    with Vault.open(seeded.url, token=seeded.admin) as v:
        v.pull("safe@v1", tmp_path / "o")
    text = httpx.get(f"{seeded.url}/metrics").text
    assert 'weightvault_objects_stored{kind="versions"}' in text
    out = next(line for line in text.splitlines() if line.startswith("weightvault_bytes_out_total"))
    assert float(out.split()[-1]) >= 100_000
    assert 'status="200"' in text and "weightvault_pull_seconds_count" in text
    assert httpx.get(f"{seeded.url}/readyz").json() == {
        "status": "ok",
        "checks": {"index": "ok", "store": "ok"},
    }
