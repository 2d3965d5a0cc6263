"""A client that checks every file's SHA-256 may ask the server to skip its per-chunk check.

A real server on a vault with a secondary replica (a folder). The request header turns the
server's BLAKE3 check off for that one response only; every other client (curl-like, the Hub
route) still gets checked bytes, a bad primary copy skipped for the replica's good one. The
weightvault client that received bad bytes discards them and fetches the file again checked:
right bytes from a good copy, or the corrupt-object error and nothing left behind.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from weightvault import Vault
from weightvault.core import layout
from weightvault.core.errors import CorruptObjectError
from weightvault.core.headers import (
    CLIENT_VERIFIES,
    CLIENT_VERIFIES_SHA256,
    SERVER_VERIFIED,
    SERVER_VERIFIED_CHUNKS,
    SERVER_VERIFIED_NONE,
)
from weightvault.testing.server import ServerProcess

from ..conftest import write_random

SIZE = 12_000_000  # several 4 MiB blocks: a chunk past the first block can be corrupted


@dataclass
class Mirrored:
    url: str
    home: Path
    archive: Path
    token: str

    def push(self, model: str, tmp_path: Path, seed: int) -> bytes:
        src = tmp_path / model.replace("/", "_")
        data = write_random(src / "w.bin", SIZE, seed=seed).read_bytes()
        with Vault.open(self.url, token=self.token) as remote:
            remote.push(model, src, version="v1")
        return data

    def flip(self, model: str, roots: list[Path], past: int) -> int:
        """Flip one byte of the first chunk that starts at or after file offset ``past``, in the
        pack copies under ``roots``; returns the file offset of that byte."""
        with Vault.open(self.home) as v:
            chunks = v.open_file(f"{model}@v1", "w.bin").recipe.chunks
            starts = [sum(n for _, n in chunks[:i]) for i in range(len(chunks))]
            i = next(i for i, s in enumerate(starts) if s >= past)
            (cid, n), offset = chunks[i], starts[i]
            loc = v.index.locate_chunks([cid])[cid]
        for root in roots:
            pack = root / layout.pack_key(loc.pack_id)
            raw = bytearray(pack.read_bytes())
            raw[loc.offset + n // 2] ^= 0x01
            pack.write_bytes(bytes(raw))
        return offset + n // 2

    def file_url(self, model: str) -> str:
        return f"{self.url}/api/v1/models/{model}/-/versions/v1/files/w.bin"

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture(scope="module")
def mirrored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mirrored]:
    root = tmp_path_factory.mktemp("mirrored")
    home, archive = root / "home", root / "archive"
    home.mkdir()
    (home / "config.yaml").write_text(f"replicas:\n  archive: {archive.as_uri()}\n")
    with Vault.open(home) as v:
        token = v.access.create_token("root", "admin", admin=True).token
    with ServerProcess(home) as proc:
        yield Mirrored(proc.url, home, archive, token)


def test_the_header_skips_the_server_check_for_that_request_only(mirrored: Mirrored, tmp_path: Path) -> None:
    data = mirrored.push("skip/one", tmp_path, seed=21)
    at = mirrored.flip("skip/one", [mirrored.home / "store"], SIZE // 2)  # the primary copy only
    url = mirrored.file_url("skip/one")
    unchecked = httpx.get(url, headers={**mirrored.auth, CLIENT_VERIFIES: CLIENT_VERIFIES_SHA256})
    assert unchecked.status_code == 200 and unchecked.headers[SERVER_VERIFIED] == SERVER_VERIFIED_NONE
    got = unchecked.content
    assert len(got) == SIZE and got != data  # the primary's bad byte went out as it is stored
    assert got[:at] == data[:at] and got[at + 1 :] == data[at + 1 :] and got[at] == data[at] ^ 0x01
    # any other request is checked: the bad primary copy is skipped for the archive's good one
    checked = httpx.get(url, headers=mirrored.auth)
    assert checked.status_code == 200 and checked.headers[SERVER_VERIFIED] == SERVER_VERIFIED_CHUNKS
    assert checked.content == data
    ranged = httpx.get(url, headers={**mirrored.auth, "Range": f"bytes={at - 10}-{at + 10}"})
    assert ranged.status_code == 206 and ranged.content == data[at - 10 : at + 11]
    hub = httpx.get(f"{mirrored.url}/skip/one/resolve/v1/w.bin", headers=mirrored.auth)
    assert hub.status_code == 200 and hub.content == data
    # a value the server does not know is refused, not taken as a reason to skip the check
    odd = httpx.get(url, headers={**mirrored.auth, CLIENT_VERIFIES: "trust-me"})
    assert odd.status_code == 400 and odd.json()["code"] == "invalid_input"
    spec = httpx.get(f"{mirrored.url}/openapi.json").json()
    route = spec["paths"]["/api/v1/models/{model}/-/versions/{rev}/files/{path}"]["get"]
    assert CLIENT_VERIFIES in [p["name"] for p in route["parameters"]]  # documented for other clients


def test_the_client_refetches_checked_after_a_mismatch_and_gets_the_good_copy(
    mirrored: Mirrored, tmp_path: Path
) -> None:
    data = mirrored.push("skip/two", tmp_path, seed=22)
    mirrored.flip("skip/two", [mirrored.home / "store"], SIZE // 3)
    dest = tmp_path / "out"
    with Vault.open(mirrored.url, token=mirrored.token) as remote:
        result = remote.pull("skip/two@v1", dest)
    assert (dest / "w.bin").read_bytes() == data
    assert [p.name for p in dest.iterdir()] == ["w.bin"]  # no partial file left over
    assert result.bytes_from_store == 2 * SIZE  # unchecked (bad), then checked (from the archive)


@pytest.mark.parametrize("past", [0, SIZE // 2], ids=["first-block", "later-block"])
def test_no_good_copy_is_the_corrupt_object_error_and_leaves_nothing(
    mirrored: Mirrored, tmp_path: Path, past: int
) -> None:
    model = f"skip/bad{past}"
    mirrored.push(model, tmp_path, seed=23 + past)
    at = mirrored.flip(model, [mirrored.home / "store", mirrored.archive], past)  # every copy
    dest = tmp_path / "out"
    with Vault.open(mirrored.url, token=mirrored.token) as remote, pytest.raises(CorruptObjectError):
        remote.pull(f"{model}@v1", dest)
    assert not dest.exists() or not any(dest.iterdir())  # no file, no partial file
    # the checked answer from the bad chunk on is the typed JSON error, not a cut body
    url = mirrored.file_url(model)
    answer = httpx.get(url, headers={**mirrored.auth, "Range": f"bytes={at}-"})
    assert answer.status_code == 500 and answer.json()["code"] == "corrupt_object"
