"""The two hashes of the format: BLAKE3 names chunks (fast), SHA-256 names whole files (clients expect it)."""

from __future__ import annotations

import hashlib

from blake3 import blake3

CHUNK_ID_SIZE = 32


def chunk_id(data: bytes | bytearray | memoryview) -> bytes:
    return blake3(data).digest()


def sha256_hex(data: bytes | bytearray | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()
