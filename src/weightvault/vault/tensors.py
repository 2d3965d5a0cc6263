"""Tensor listings of a version's safetensors files, from their headers alone.

A header is a few KiB at the start of a file of many GiB, so only the chunks that cover it are
fetched (ranged reads of packs, each chunk verified against its id as usual): the first chunk,
which holds the header's length and usually the whole header, then more only for a header that
runs past it. The whole file is never read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from weightvault.cas.safetensors_header import (
    SafetensorsHeader,
    parse_safetensors_header,
    safetensors_header_length,
)
from weightvault.core.errors import InvalidInputError, MalformedFileError, NotFoundError
from weightvault.core.manifest import FileEntry
from weightvault.core.revision import Ref, parse_ref

if TYPE_CHECKING:
    from weightvault.vault.records import Records

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


def read_prefix(vault: Records, model: str, entry: FileEntry, need: int) -> bytes:
    """The file's first chunks, as many as cover its first ``need`` bytes (whole chunks: what is
    fetched anyway), each verified against its id."""
    recipe = vault._recipe(entry.sha256, model, inline=entry.inline_recipe())
    ids: list[bytes] = []
    pos = 0
    for cid, n in recipe.chunks:
        if pos >= need:
            break
        ids.append(cid)
        pos += n
    out = bytearray()
    for raw in vault._reader_for(model).chunks(ids, f"{model}:{entry.path}"):
        out += raw
    return bytes(out)


def read_header(vault: Records, model: str, entry: FileEntry) -> SafetensorsHeader:
    """The header from the chunks that hold it: the first chunk (at least 256 KiB) usually has it all."""
    head = read_prefix(vault, model, entry, 8)
    try:
        total = safetensors_header_length(head[:8], entry.size)
        if total is not None and len(head) < total:
            head = read_prefix(vault, model, entry, total)
        return parse_safetensors_header(head[: total or 8], entry.size)
    except MalformedFileError as exc:
        raise MalformedFileError(f"{entry.path} is not a valid safetensors file: {exc}") from None


def list_tensors(vault: Records, ref: str | Ref, path: str | None = None) -> list[TensorListing]:
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
