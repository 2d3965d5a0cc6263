"""The body of a chunk upload request: frames of ``chunk id (32 bytes) | length (4 bytes BE) | data``.

Shared by the server (which parses it) and the remote client (which writes it).
"""

from __future__ import annotations

from weightvault.cas.hashing import CHUNK_ID_SIZE

FRAME_HEADER = CHUNK_ID_SIZE + 4


def frame_header(chunk_id: bytes, length: int) -> bytes:
    return chunk_id + length.to_bytes(4, "big")
