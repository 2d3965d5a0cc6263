"""How chunks become blobs and back: compression (cas.compression), then sealing (cas.encryption).

The push side is a ``BlobEncoder`` (a ``push.ChunkEncoder``); it exists only when a push
compresses or encrypts, so the plain path does no per-chunk work at all. The pull side is a
``BlobCodec`` per encryption domain (plain models share one), used by ``ChunkReader``: it
decodes into the reader's buffers and says which hash proves a chunk (keyed BLAKE3 iff the
blob is sealed: the format's invariant, so a plain blob put in place of a sealed one can never
match its keyed id).

Compressed chunks are verified by their chunk id after decompression, like every chunk.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from weightvault.cas.hashing import chunk_id as plain_chunk_id
from weightvault.core.errors import CorruptObjectError

if TYPE_CHECKING:  # a plain pull's reader loads neither the keyring (cryptography) nor the push's sources
    from weightvault.cas.compression import FileLayout
    from weightvault.cas.encryption import BlobCipher
    from weightvault.vault.keyring import Domain
    from weightvault.vault.source import SourceFile

#: The codec byte's flag for a sealed blob (``cas.compression.ENCRYPTED``).
ENCRYPTED: Final = 0x80
#: Nonce and tag a seal adds (``cas.encryption.SEAL_OVERHEAD``).
SEAL_OVERHEAD: Final = 28


def _cas() -> Any:
    """``cas.compression``, imported on first use: numpy and zstandard take a tenth of a second to
    import, which a vault that neither compresses nor encrypts should not pay on every command."""
    from weightvault.cas import compression

    return compression


Compression = Literal["none", "zstd", "float"]
BytesLike = bytes | bytearray | memoryview
ChunkIdFn = Callable[[BytesLike], bytes]

SAFETENSORS_SUFFIX: Final = ".safetensors"


def read_file_layout(path: Path, size: int) -> FileLayout | None:
    """The float layout of a safetensors file from its header; None for anything else."""
    from weightvault.cas.safetensors_layout import parse_safetensors_layout, safetensors_header_length

    try:
        with open(path, "rb") as f:
            head = f.read(8)
            total = safetensors_header_length(head, size)
            if total is None:
                return None
            head += f.read(total - 8)
    except OSError:
        return None
    return parse_safetensors_layout(head, size)


def layout_from_prefix(prefix: BytesLike, size: int) -> FileLayout | None:
    """The same from the first bytes of a file already in memory (None if too short)."""
    from weightvault.cas.safetensors_layout import parse_safetensors_layout, safetensors_header_length

    total = safetensors_header_length(prefix, size)
    if total is None or len(prefix) < total:
        return None
    return parse_safetensors_layout(prefix, size)


def layout_from_chunks(path: str, size: int, chunks: Iterable[BytesLike]) -> FileLayout | None:
    """The same for a file re-encoded from its stored chunks: draws on ``chunks`` (lazily) only for a
    safetensors file, and only until its header is complete."""
    if not path.endswith(".safetensors"):
        return None
    prefix = bytearray()
    for raw in chunks:
        prefix += raw
        found = layout_from_prefix(prefix, size)
        if found is not None:
            return found
    return None


class _Scratch(threading.local):
    def __init__(self) -> None:
        self.buf = bytearray(0)

    def get(self, size: int) -> memoryview:
        if len(self.buf) < size:
            self.buf = bytearray(max(size, 5 << 20))
        return memoryview(self.buf)[:size]


class BlobEncoder:
    """Compress (per ``compression``) and seal (under ``cipher``) one chunk; thread-safe.

    Called as ``encoder(view, chunk_id, offset_in_file, source_file)`` and returns
    ``(codec byte, stored bytes, key slot)``; the stored bytes may live in a per-thread buffer
    and are valid until that thread's next call (the pack sink copies them at once).
    """

    def __init__(
        self,
        compression: Compression = "none",
        cipher: BlobCipher | None = None,
        slot: int = 0,
        level: int | None = None,
    ) -> None:
        cas = _cas()
        self._encode_chunk = cas.encode_chunk_view  # the pack sink copies the result at once
        self._layout_for_range = cas.layout_for_range
        self.compression = compression
        self.cipher = cipher
        self.slot = slot if cipher is not None else 0
        self.level: int = cas.DEFAULT_LEVEL if level is None else level
        self._layouts: dict[str, FileLayout | None] = {}
        self._lock = threading.Lock()
        self._out = _Scratch()

    def set_layout(self, src: SourceFile, layout: FileLayout | None) -> None:
        with self._lock:
            self._layouts[str(src.abspath)] = layout

    def _layout(self, src: SourceFile) -> FileLayout | None:
        key = str(src.abspath)
        with self._lock:
            if key in self._layouts:
                return self._layouts[key]
        layout = read_file_layout(src.abspath, src.size) if src.path.endswith(SAFETENSORS_SUFFIX) else None
        with self._lock:
            self._layouts[key] = layout
        return layout

    def __call__(
        self, view: memoryview, cid: bytes, offset: int, src: SourceFile
    ) -> tuple[int, BytesLike, int]:
        codec = 0
        stored: BytesLike = view
        if self.compression != "none":
            layout = None
            if self.compression == "float":
                file_layout = self._layout(src)
                if file_layout is not None:
                    layout = self._layout_for_range(file_layout, offset, len(view))
            codec, packed = self._encode_chunk(view, layout, self.level)
            if codec != 0:  # RAW comes back as a copy; the view itself will do
                stored = packed
        if self.cipher is not None:
            codec |= ENCRYPTED
            out = self._out.get(len(stored) + SEAL_OVERHEAD)
            stored = self.cipher.seal_into(stored, out, chunk_id=cid, codec=codec, raw_len=len(view))
        return codec, stored, self.slot


class BlobCodec:
    """Decodes the blobs of one domain (or of plain models, ``domain=None``)."""

    def __init__(
        self, domain: Domain | None = None, refresh: Callable[[], Domain | None] | None = None
    ) -> None:
        self.domain = domain
        self._refresh = refresh
        self._scratch = _Scratch()
        self._keyed: ChunkIdFn | None = domain.chunk_id if domain is not None else None
        self._lock = threading.Lock()

    @property
    def model(self) -> str | None:
        return self.domain.model if self.domain is not None else None

    def _cipher(self, slot: int, cid: bytes) -> BlobCipher:
        from weightvault.cas.encryption import DecryptionError

        dom = self.domain
        if dom is None:
            raise DecryptionError(f"chunk {cid.hex()} is encrypted but was read without its model's keys")
        cipher = dom.ciphers.get(slot)
        if cipher is None and self._refresh is not None:
            with self._lock:  # a rotation may have added the slot since this domain was opened
                fresh = self._refresh()
                if fresh is not None:
                    self.domain = dom = fresh
                    self._keyed = fresh.chunk_id
            cipher = dom.ciphers.get(slot)
        if cipher is None:
            from weightvault.vault.keyring import KeySlotMissingError

            raise KeySlotMissingError(
                f"chunk {cid.hex()} of {dom.model} is sealed under data key slot {slot}, which its keyring "
                "does not hold (dropped by keys rotate --reencrypt?)"
            )
        return cipher

    def chunk_id_for(self, codec: int) -> ChunkIdFn:
        """The hash that names a chunk stored with ``codec``: keyed iff the blob is sealed."""
        if codec & ENCRYPTED:
            if self._keyed is None:
                from weightvault.cas.encryption import DecryptionError

                raise DecryptionError("an encrypted blob was read without its model's keys")
            return self._keyed
        return plain_chunk_id

    def decode_into(
        self, codec: int, stored: memoryview, out: memoryview, cid: bytes, slot: int
    ) -> memoryview:
        """The raw chunk (``len(out)`` bytes): ``stored`` itself for a plain raw blob, else in ``out``.

        ``CorruptObjectError`` (``DecryptionError`` for a failed seal) when the blob is bad.
        """
        raw_len = len(out)
        if codec == 0:
            return stored
        if codec == ENCRYPTED:  # sealed, not compressed: no need to import the compression codecs
            if len(stored) - SEAL_OVERHEAD != raw_len:
                raise CorruptObjectError(f"sealed raw blob of chunk {cid.hex()} has the wrong size")
            return self._cipher(slot, cid).open_into(stored, out, chunk_id=cid, codec=codec, raw_len=raw_len)
        cas = _cas()
        base = cas.compression_codec(codec)
        if codec & ENCRYPTED:
            cipher = self._cipher(slot, cid)
            n = len(stored) - SEAL_OVERHEAD
            plain = cipher.open_into(
                stored, self._scratch.get(max(n, 0)), chunk_id=cid, codec=codec, raw_len=raw_len
            )
            cas.decode_chunk_into(base, plain, out)
            return out
        if base == 0:
            return stored
        cas.decode_chunk_into(base, stored, out)
        return out

    def decode(
        self, codec: int, stored: memoryview, raw_len: int, cid: bytes, slot: int
    ) -> bytes | memoryview:
        """:meth:`decode_into` a fresh buffer (for callers outside the hot path)."""
        return self.decode_into(codec, memoryview(stored), memoryview(bytearray(raw_len)), cid, slot)
