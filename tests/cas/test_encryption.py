from __future__ import annotations

import os

import blake3
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from weightvault.cas.compression import ENCRYPTED, ByteLayout, Codec, FloatKind, Region
from weightvault.cas.encryption import (
    SEAL_OVERHEAD,
    BlobCipher,
    DataKey,
    DecryptionError,
    chunk_id_function,
    data_key_id,
    decode_blob,
    decode_blob_into,
    encode_blob,
)
from weightvault.core.errors import CorruptObjectError, InvalidInputError

KEY = DataKey.generate()
CIPHER = BlobCipher(KEY)
CID = blake3.blake3(b"chunk").digest()


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=5000), st.sampled_from(list(Codec)))
def test_seal_open_round_trip(data: bytes, codec: Codec) -> None:
    sealed = CIPHER.seal(data, chunk_id=CID, codec=codec, raw_len=len(data) + 3)
    assert len(sealed) == len(data) + SEAL_OVERHEAD
    assert CIPHER.open(sealed, chunk_id=CID, codec=codec, raw_len=len(data) + 3) == data


def test_nonces_are_fresh() -> None:
    a = CIPHER.seal(b"same", chunk_id=CID, codec=0, raw_len=4)
    b = CIPHER.seal(b"same", chunk_id=CID, codec=0, raw_len=4)
    assert a[:12] != b[:12] and a != b


def test_blob_is_bound_to_chunk_codec_length_and_key() -> None:
    sealed = CIPHER.seal(b"payload", chunk_id=CID, codec=Codec.ZSTD, raw_len=100)
    other_id = blake3.blake3(b"other").digest()
    for kwargs in (
        {"chunk_id": other_id, "codec": Codec.ZSTD, "raw_len": 100},
        {"chunk_id": CID, "codec": Codec.RAW, "raw_len": 100},
        {"chunk_id": CID, "codec": Codec.ZSTD, "raw_len": 101},
    ):
        with pytest.raises(DecryptionError):
            CIPHER.open(sealed, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(DecryptionError):
        BlobCipher(DataKey.generate()).open(sealed, chunk_id=CID, codec=Codec.ZSTD, raw_len=100)
    assert CIPHER.open(sealed, chunk_id=CID, codec=Codec.ZSTD | ENCRYPTED, raw_len=100) == b"payload"


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_flipped_bit_fails_authentication(data: st.DataObject) -> None:
    sealed = bytearray(CIPHER.seal(os.urandom(300), chunk_id=CID, codec=1, raw_len=999))
    bit = data.draw(st.integers(0, len(sealed) * 8 - 1))
    sealed[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(DecryptionError):
        CIPHER.open(bytes(sealed), chunk_id=CID, codec=1, raw_len=999)


def test_short_blob_is_corrupt_not_a_crash() -> None:
    for n in (0, 5, SEAL_OVERHEAD - 1):
        with pytest.raises(CorruptObjectError):
            CIPHER.open(b"\0" * n, chunk_id=CID, codec=0, raw_len=0)


def test_decryption_error_is_a_corrupt_object_error() -> None:
    assert issubclass(DecryptionError, CorruptObjectError)


SENTINEL = b"WEIGHTVAULT-SENTINEL-7f3a9c"


@pytest.mark.parametrize("compressible", [True, False])
def test_encrypted_blob_never_contains_plaintext(compressible: bool) -> None:
    filler = b"\0" * 997 if compressible else os.urandom(997)
    raw = (SENTINEL + filler) * 300
    _, plain_blob = encode_blob(raw, chunk_id=CID)
    if not compressible:
        assert SENTINEL in plain_blob  # the check below is meaningful: it would be visible
    codec, blob = encode_blob(raw, chunk_id=CID, cipher=CIPHER)
    assert codec & ENCRYPTED
    assert SENTINEL not in blob
    assert SENTINEL[:12] not in blob
    assert decode_blob(codec, blob, len(raw), chunk_id=CID, cipher=CIPHER) == raw


def test_encode_decode_blob_with_float_layout() -> None:
    x = (np.random.default_rng(3).standard_normal(50_000) * 0.02).astype("<f4")
    raw = b"\x01" + x.tobytes()
    layout = ByteLayout((Region(1, 50_000, FloatKind.F32),))
    codec, blob = encode_blob(raw, chunk_id=CID, layout=layout, cipher=CIPHER)
    assert codec == Codec.FLOAT_PLANES | ENCRYPTED
    assert len(blob) < len(raw)
    assert decode_blob(codec, blob, len(raw), chunk_id=CID, cipher=CIPHER) == raw
    with pytest.raises(DecryptionError):
        decode_blob(codec, blob, len(raw), chunk_id=CID)  # no key
    with pytest.raises(DecryptionError):
        decode_blob(codec & ~ENCRYPTED, blob, len(raw), chunk_id=CID, cipher=CIPHER)  # relabelled
    with pytest.raises(DecryptionError):
        decode_blob(Codec.ZSTD | ENCRYPTED, blob, len(raw), chunk_id=CID, cipher=CIPHER)
    with pytest.raises(CorruptObjectError):
        decode_blob(0x20 | ENCRYPTED, blob, len(raw), chunk_id=CID, cipher=CIPHER)


def test_plaintext_blob_refused_in_encrypted_domain() -> None:
    codec, blob = encode_blob(b"a" * 1000, chunk_id=CID)
    assert decode_blob(codec, blob, 1000, chunk_id=CID) == b"a" * 1000
    with pytest.raises(DecryptionError):
        decode_blob(codec, blob, 1000, chunk_id=CID, cipher=CIPHER)


def test_keyed_chunk_ids() -> None:
    data = b"some chunk bytes" * 100
    plain = chunk_id_function(None)
    assert plain(data) == blake3.blake3(data).digest()
    k1, k2 = DataKey.generate(), DataKey.generate()
    id1, id2 = chunk_id_function(k1), chunk_id_function(k2)
    assert id1(data) == id1(memoryview(data)) == chunk_id_function(DataKey(k1.key_id, k1.material))(data)
    assert len({plain(data), id1(data), id2(data)}) == 3
    assert id1(data) == blake3.blake3(data, key=k1.id_key).digest()
    # The id key, the blob key and the material are three different secrets.
    assert len({k1.id_key, k1.blob_key, k1.material}) == 3


def test_data_key_checks_and_hides_material() -> None:
    k = DataKey.generate()
    assert k.material.hex() not in repr(k)
    assert k.key_id == data_key_id(k.material) and len(k.key_id) == 32
    with pytest.raises(InvalidInputError):
        DataKey(k.key_id, os.urandom(32))
    with pytest.raises(InvalidInputError):
        DataKey.from_material(b"short")


def test_into_forms_reuse_buffers() -> None:
    x = (np.random.default_rng(4).standard_normal(30_000) * 0.02).astype("<f4").tobytes()
    layout = ByteLayout((Region(0, 30_000, FloatKind.F32),))
    codec, blob = encode_blob(x, chunk_id=CID, layout=layout, cipher=CIPHER)
    out = bytearray(len(x))
    decode_blob_into(codec, blob, out, chunk_id=CID, cipher=CIPHER)
    assert out == x
    buf = bytearray(len(blob) + 100)
    view = CIPHER.seal_into(b"abc", buf, chunk_id=CID, codec=1, raw_len=3)
    assert len(view) == 3 + SEAL_OVERHEAD
    opened = bytearray(10)
    assert CIPHER.open_into(view, opened, chunk_id=CID, codec=1, raw_len=3) == b"abc"
    with pytest.raises(InvalidInputError):
        CIPHER.seal_into(b"abc", bytearray(3 + SEAL_OVERHEAD - 1), chunk_id=CID, codec=1, raw_len=3)
    with pytest.raises(DecryptionError):
        decode_blob_into(codec, blob[:-1], out, chunk_id=CID, cipher=CIPHER)
