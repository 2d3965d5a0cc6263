"""Tensor listings of a version's safetensors files, from their headers alone.

A header is a few KiB at the start of a file of many GiB, so only the chunks that cover it are
fetched (ranged reads of packs, each chunk verified against its id as usual): 8 bytes for the
header's length, then the header. The whole file is never read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from weightvault.cas.safetensors_header import SafetensorsHeader, parse_safetensors_header
from weightvault.core.errors import InvalidInputError, MalformedFileError, NotFoundError
from weightvault.core.manifest import FileEntry
from weightvault.core.revision import Ref, parse_ref

if TYPE_CHECKING:
    from weightvault.vault.vault import Vault

SAFETENSORS_SUFFIX = ".safetensors"


class FileNotInVersionError(NotFoundError):
    code = "entry_not_found"


@dataclass(frozen=True, slots=True)
class TensorListing:
    path: str
    size: int
    header: SafetensorsHeader

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "size": self.size,
            "metadata": dict(self.header.metadata),
            "tensors": [t.to_json() for t in self.header.tensors],
        }


def read_range(vault: Vault, model: str, entry: FileEntry, start: int, length: int) -> bytes:
    """Bytes ``[start, start + length)`` of a stored file, fetching only the chunks that cover them."""
    end = min(start + length, entry.size)
    if start >= end:
        return b""
    recipe = vault._recipe(entry.sha256, model)
    ids: list[bytes] = []
    first = -1
    pos = 0
    for cid, n in recipe.chunks:
        if pos + n > start:
            if first < 0:
                first = pos
            ids.append(cid)
        pos += n
        if pos >= end:
            break
    out = bytearray()
    for raw in vault._reader_for(model).chunks(ids, f"{model}:{entry.path}"):
        out += raw
    return bytes(out[start - first : end - first])


def read_header(vault: Vault, model: str, entry: FileEntry) -> SafetensorsHeader:
    head = read_range(vault, model, entry, 0, 8)
    if len(head) < 8:
        raise MalformedFileError(f"{entry.path} is too short for a safetensors file")
    n = int.from_bytes(head, "little")
    try:
        if 8 + n <= entry.size:
            head += read_range(vault, model, entry, 8, n)
        return parse_safetensors_header(head, entry.size)
    except MalformedFileError as exc:
        raise MalformedFileError(f"{entry.path} is not a valid safetensors file: {exc}") from None


def list_tensors(vault: Vault, ref: str | Ref, path: str | None = None) -> list[TensorListing]:
    """Every safetensors file of the version (or just ``path``) with its tensors."""
    r = parse_ref(ref) if isinstance(ref, str) else ref
    info = vault.show(r)
    if path is not None:
        entries = [f for f in info.files if f.path == path]
        if not entries:
            raise FileNotInVersionError(f"{info.model}@{info.label} has no file {path!r}")
        if not path.endswith(SAFETENSORS_SUFFIX):
            raise InvalidInputError(f"{path} is not a safetensors file")
    else:
        entries = [f for f in info.files if f.path.endswith(SAFETENSORS_SUFFIX)]
    return [TensorListing(e.path, e.size, read_header(vault, info.model, e)) for e in entries]
