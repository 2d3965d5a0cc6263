"""Pack objects: many stored chunks (blobs) in one object, with a table at the end.

Byte layout (version 1, all integers little-endian; see docs/format.md):

    blob_0 | blob_1 | ... | blob_{n-1} | table | footer
    table  = n entries of 56 bytes:
             chunk_id[32] offset:u64 stored_len:u32 raw_len:u32 codec:u8 key_slot:u8 pad[6]
    footer = 32 bytes: magic b"WVPACK\\x00\\x01" entry_count:u32 table_len:u32 blake3(table)[:16]

The ``index/`` object of a pack holds exactly ``table | footer``, so the index can be rebuilt
from either. Blobs never straddle: a reader needs only (offset, stored_len) from the table.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Protocol

from blake3 import blake3

from weightvault.core.errors import FormatError

PACK_MAGIC = b"WVPACK\x00\x01"
ENTRY = struct.Struct("<32sQIIBB6x")
FOOTER = struct.Struct("<8sII16s")
assert ENTRY.size == 56 and FOOTER.size == 32


@dataclass(frozen=True, slots=True)
class PackEntry:
    chunk_id: bytes
    offset: int
    stored_len: int
    raw_len: int
    codec: int = 0
    key_slot: int = 0


def encode_table(entries: list[PackEntry]) -> bytes:
    table = b"".join(
        ENTRY.pack(e.chunk_id, e.offset, e.stored_len, e.raw_len, e.codec, e.key_slot) for e in entries
    )
    return table + FOOTER.pack(PACK_MAGIC, len(entries), len(table), blake3(table).digest()[:16])


def decode_table(data: bytes) -> list[PackEntry]:
    """Parse ``table | footer`` (the tail of a pack or a whole index object), checking its hash."""
    if len(data) < FOOTER.size:
        raise FormatError("pack table too short")
    magic, count, table_len, digest = FOOTER.unpack_from(data, len(data) - FOOTER.size)
    if magic != PACK_MAGIC:
        raise FormatError("not a weightvault pack (bad magic)")
    if table_len != count * ENTRY.size or table_len + FOOTER.size > len(data):
        raise FormatError("pack table length mismatch")
    table = data[len(data) - FOOTER.size - table_len : len(data) - FOOTER.size]
    if blake3(table).digest()[:16] != digest:
        raise FormatError("pack table checksum mismatch")
    return [PackEntry(*ENTRY.unpack_from(table, i * ENTRY.size)) for i in range(count)]


def table_size(tail: bytes) -> int:
    """Size of ``table | footer`` given at least the pack's last FOOTER.size bytes."""
    magic, _count, table_len, _ = FOOTER.unpack_from(tail, len(tail) - FOOTER.size)
    if magic != PACK_MAGIC:
        raise FormatError("not a weightvault pack (bad magic)")
    return int(table_len) + FOOTER.size


class Writable(Protocol):
    def write(self, data: bytes | bytearray | memoryview, /) -> int: ...


class PackWriter:
    """Appends blobs to an open file; ``finish`` writes the table and returns it."""

    def __init__(self, file: Writable) -> None:
        self._file = file
        self.entries: list[PackEntry] = []
        self.size = 0

    def add(
        self,
        chunk_id: bytes,
        stored: bytes | bytearray | memoryview,
        raw_len: int,
        codec: int = 0,
        key_slot: int = 0,
    ) -> None:
        n = len(stored)
        self._file.write(stored)
        self.entries.append(PackEntry(chunk_id, self.size, n, raw_len, codec, key_slot))
        self.size += n

    def finish(self) -> bytes:
        table = encode_table(self.entries)
        self._file.write(table)
        self.size += len(table)
        return table
