from __future__ import annotations

import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from weightvault.cas.pack import FOOTER, PackEntry, PackWriter, decode_table, encode_table, table_size
from weightvault.core.errors import FormatError


@given(
    st.lists(
        st.tuples(st.binary(min_size=32, max_size=32), st.binary(max_size=300), st.integers(0, 255)),
        max_size=30,
    )
)
def test_pack_round_trip(blobs: list[tuple[bytes, bytes, int]]) -> None:
    buf = io.BytesIO()
    w = PackWriter(buf)
    for cid, data, codec in blobs:
        w.add(cid, data, len(data) + 1, codec)
    table = w.finish()
    pack = buf.getvalue()
    assert pack.endswith(table)
    assert table_size(pack[-FOOTER.size :]) == len(table)
    entries = decode_table(pack)
    assert [e.chunk_id for e in entries] == [b[0] for b in blobs]
    for e, (_cid, data, codec) in zip(entries, blobs, strict=True):
        assert pack[e.offset : e.offset + e.stored_len] == data
        assert e.codec == codec and e.raw_len == len(data) + 1


def test_corrupt_table_is_detected() -> None:
    table = bytearray(encode_table([PackEntry(b"\x01" * 32, 0, 10, 10)]))
    table[5] ^= 0x40
    with pytest.raises(FormatError, match="checksum"):
        decode_table(bytes(table))
    with pytest.raises(FormatError, match="magic"):
        decode_table(b"\x00" * 64)
    with pytest.raises(FormatError):
        decode_table(b"short")
