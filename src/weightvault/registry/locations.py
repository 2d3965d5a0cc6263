"""Where a chunk is stored, and which of its copies a read takes.

Both readers of the index locate chunks: ``RegistryIndex`` (SQLAlchemy) and the standard
library's ``IndexSnapshot`` (a pull that need not load SQLAlchemy). They run the same query
and pick the copy by this one rule, so every machine with the same rows, and either reader on
one machine, reads the same bytes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

#: ids per ``IN (...)`` query: well below SQLite's and PostgreSQL's parameter limits
BATCH = 500


@dataclass(frozen=True, slots=True)
class ChunkLocation:
    pack_id: str
    offset: int
    stored_len: int
    raw_len: int
    codec: int
    key_slot: int


#: (chunk id, pack id, offset, stored length, raw length, codec, key slot, pack condemned at)
LocationRow = tuple[bytes, str, int, int, int, int, int, Any]


def best_locations(rows: Iterable[LocationRow], include_condemned: bool = True) -> dict[bytes, ChunkLocation]:
    """One location per chunk: the highest key slot (within an encrypted model the newest seal),
    then a pack not condemned, then the smallest pack id."""
    best: dict[bytes, tuple[tuple[int, int, str], ChunkLocation]] = {}
    for cid, pack_id, offset, stored_len, raw_len, codec, slot, condemned in rows:
        if condemned is not None and not include_condemned:
            continue
        rank = (-slot, 0 if condemned is None else 1, pack_id)
        have = best.get(cid)
        if have is None or rank < have[0]:
            best[cid] = (rank, ChunkLocation(pack_id, offset, stored_len, raw_len, codec, slot))
    return {cid: loc for cid, (_rank, loc) in best.items()}
