"""The pull's receiving path against real HTTP servers that misbehave in the ways a network can:
a body cut short, a server that ignores Range, an error answer, a consumer that fails."""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from weightvault.client import receive
from weightvault.client.download import fetch, part_path
from weightvault.client.http import Http, error_of
from weightvault.core.errors import BackendUnavailableError, DiskFullError, ModelNotFoundError
from weightvault.core.manifest import FileEntry
from weightvault.vault.pull import PlannedFile

DATA = bytes(range(256)) * 12_000  # 3 MB: several receive buffers


class _Handler(http.server.BaseHTTPRequestHandler):
    """/whole: the file, ignoring Range; /short: announces it all, sends 40 %; /missing, /full:
    JSON errors (404, 507)."""

    def do_GET(self) -> None:
        if self.path.endswith(("/missing", "/full")):
            full = self.path.endswith("/full")
            body = (
                b'{"code": "disk_full", "message": "the server store is full"}'
                if full
                else b'{"code": "model_not_found", "message": "model x not found"}'
            )
            self.send_response(507 if full else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(DATA)))
        self.end_headers()
        self.wfile.write(DATA if self.path.endswith("/whole") else DATA[: len(DATA) * 2 // 5])
        self.close_connection = True

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _collect(url: str, **kw: object) -> tuple[receive.Received, bytes]:
    got = bytearray()
    result = receive.get(url, {}, lambda b: got.extend(b), error_of, **kw)  # type: ignore[arg-type]
    return result, bytes(got)


def test_the_body_arrives_whole_and_in_order_through_the_small_rotating_buffers(server: str) -> None:
    result, got = _collect(server + "/whole", block=100_000, depth=2)
    assert result.status == 200 and result.size == len(DATA) and got == DATA


def test_a_body_cut_short_is_a_transfer_error_and_what_arrived_was_consumed(server: str) -> None:
    got = bytearray()
    with pytest.raises(BackendUnavailableError, match="transfer failed"):
        receive.get(server + "/short", {}, lambda b: got.extend(b), error_of)
    assert bytes(got) == DATA[: len(got)] and len(got) == len(DATA) * 2 // 5  # kept for a resume


def test_an_error_answer_is_the_typed_error_of_its_code(server: str) -> None:
    with pytest.raises(ModelNotFoundError, match="model x not found"):
        _collect(server + "/missing")
    with pytest.raises(DiskFullError, match="store is full"):  # an OSError, not a transfer failure
        _collect(server + "/full")


def test_a_failing_consumer_stops_the_download_with_its_error(server: str) -> None:
    def full_disk(block: memoryview) -> None:
        raise DiskFullError("no space left")

    with pytest.raises(DiskFullError):
        receive.get(server + "/whole", {}, full_disk, error_of, block=100_000)


def test_a_server_that_ignores_range_makes_the_resume_start_over(server: str, tmp_path: Path) -> None:
    entry = FileEntry("w.bin", len(DATA), hashlib.sha256(DATA).hexdigest())
    target = tmp_path / "w.bin"
    part = part_path(target, entry.sha256)
    part.write_bytes(DATA[:1000])  # an earlier pull's part: a Range request for the rest is sent
    http = Http(server, None)
    try:
        fetched = fetch(http, "/../whole", PlannedFile(entry, target), lambda n: None)
    finally:
        http.close()
    assert fetched == len(DATA) and part.read_bytes() == DATA  # not the old 1000 bytes twice
