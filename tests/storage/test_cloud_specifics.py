"""What the contract cannot see from outside: large uploads really go in parts, on each cloud."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import requests
from targets import Factory

from weightvault.core.errors import InvalidInputError

MiB = 1 << 20


def test_s3_large_files_are_multipart(s3_factory: Factory, tmp_path: Path) -> None:
    backend: Any = s3_factory()
    src = tmp_path / "big"
    src.write_bytes(os.urandom(23 * MiB))
    backend.put_file("big", src)
    head = backend._client.head_object(Bucket=backend.bucket, Key=f"{backend.prefix}/big")
    assert head["ETag"].strip('"').endswith("-5")  # 5 MiB parts: 4 full + 1 short
    backend.put("from-memory", os.urandom(11 * MiB), if_absent=True)  # large put() parts too
    head = backend._client.head_object(Bucket=backend.bucket, Key=f"{backend.prefix}/from-memory")
    assert head["ETag"].strip('"').endswith("-3")
    uploads = backend._client.list_multipart_uploads(Bucket=backend.bucket, Prefix=backend.prefix)
    assert not uploads.get("Uploads"), "completed uploads must not linger"


def test_azure_large_files_are_committed_blocks(azure_factory: Factory, tmp_path: Path) -> None:
    backend: Any = azure_factory()
    src = tmp_path / "big"
    src.write_bytes(os.urandom(17 * MiB))
    backend.put_file("big", src)
    blob = backend._container.get_blob_client(f"{backend.prefix}/big")
    committed, uncommitted = blob.get_block_list("all")
    assert len(committed) == 5 and not uncommitted  # 4 MiB blocks
    assert len({b.id for b in committed}) == 5


def test_gcs_large_files_are_sent_in_resumable_chunks(
    gcs_factory: Factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend: Any = gcs_factory()
    src = tmp_path / "big"
    data = os.urandom(17 * MiB)
    src.write_bytes(data)
    ranges: list[str] = []
    original = requests.Session.put

    def spy(self: requests.Session, url: str, **kwargs: Any) -> requests.Response:
        ranges.append(kwargs["headers"]["Content-Range"])
        return original(self, url, **kwargs)

    monkeypatch.setattr(requests.Session, "put", spy)
    backend.put_file("big", src)
    total = len(data)
    assert ranges == [
        f"bytes 0-{4 * MiB - 1}/{total}",
        f"bytes {4 * MiB}-{8 * MiB - 1}/{total}",
        f"bytes {8 * MiB}-{12 * MiB - 1}/{total}",
        f"bytes {12 * MiB}-{16 * MiB - 1}/{total}",
        f"bytes {16 * MiB}-{total - 1}/{total}",
    ]
    assert backend.get("big") == data


def test_s3_files_below_the_threshold_are_one_streamed_put(
    s3_factory: Factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pack-sized file is one PutObject whose body is the open file, not a multipart upload
    and not a copy of the file in memory; ``consume`` removes the source once it is stored."""
    backend: Any = s3_factory(multipart_threshold=32 * MiB)
    src = tmp_path / "pack"
    data = os.urandom(23 * MiB + 7)
    src.write_bytes(data)
    bodies: list[Any] = []
    original = backend._client.put_object

    def spy(**kwargs: Any) -> Any:
        bodies.append(kwargs["Body"])
        return original(**kwargs)

    monkeypatch.setattr(backend._client, "put_object", spy)
    backend.put_file("pack", src, consume=True)
    assert len(bodies) == 1 and hasattr(bodies[0], "read"), "the body must be streamed from the file"
    assert not src.exists()
    head = backend._client.head_object(Bucket=backend.bucket, Key=f"{backend.prefix}/pack")
    assert "-" not in head["ETag"]  # a multipart ETag ends in -<parts>
    assert backend.get("pack") == data
    uploads = backend._client.list_multipart_uploads(Bucket=backend.bucket, Prefix=backend.prefix)
    assert not uploads.get("Uploads")


def test_s3_rejects_a_threshold_s3_cannot_honour(s3_factory: Factory) -> None:
    with pytest.raises(InvalidInputError):
        s3_factory(multipart_threshold=1 * MiB)
    with pytest.raises(InvalidInputError):
        s3_factory(multipart_threshold=6 * 1024 * MiB)
