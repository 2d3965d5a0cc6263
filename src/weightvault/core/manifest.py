"""Manifests (what a version is) and recipes (how to rebuild a file), with canonical encodings.

Both are stored as immutable objects and both encodings are canonical: sorted keys, no
insignificant whitespace, UTF-8. The commit id of a version is derived from its canonical
manifest, so the same tree, metadata and parent always give the same id. See docs/format.md.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from weightvault.core.errors import FormatError, InvalidInputError
from weightvault.core.names import check_model_name, check_relative_path

MANIFEST_FORMAT = 1
#: the format of a manifest with at least one inline recipe (docs/format.md, "Manifests")
INLINE_MANIFEST_FORMAT = 2
RECIPE_FORMAT = 1
#: plain models' files up to this size get their recipe inline in the manifest, not as an object
#: (the default largest chunk: bigger files keep shared recipe objects and manifests stay small)
INLINE_MAX_SIZE = 4 << 20
_HEX64 = frozenset("0123456789abcdef")


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _is_hex(text: str, length: int) -> bool:
    return len(text) == length and set(text) <= _HEX64


@dataclass(frozen=True, slots=True)
class FileEntry:
    path: str
    size: int
    sha256: str
    #: the file's recipe inline (chunk id, raw length), or None when it is a ``recipes/`` object
    chunks: tuple[tuple[bytes, int], ...] | None = None

    def to_json(self) -> dict[str, Any]:
        """What users see of the entry (the inline recipe is store detail, not shown)."""
        return {"path": self.path, "size": self.size, "sha256": self.sha256}

    def inline_recipe(self) -> FileRecipe | None:
        """The recipe carried by the entry, or None when the file's recipe is an object."""
        if self.chunks is None:
            return None
        return FileRecipe(self.sha256, self.size, self.chunks)

    @classmethod
    def of(cls, path: str, recipe: FileRecipe, *, plain: bool) -> FileEntry:
        """The manifest entry a writer makes for a file: its recipe inline when the model is plain
        and the file small (``INLINE_MAX_SIZE``), else named only (its recipe is an object)."""
        inline = plain and recipe.size <= INLINE_MAX_SIZE
        return cls(path, recipe.size, recipe.sha256, recipe.chunks if inline else None)

    def _stored(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "size": self.size, "sha256": self.sha256}
        if self.chunks is not None:
            out["chunks"] = [[cid.hex(), n] for cid, n in self.chunks]
        return out


def _inline_chunks(raw: Any) -> tuple[tuple[bytes, int], ...] | None:
    if raw is None:
        return None
    chunks = tuple((bytes.fromhex(c), n) for c, n in raw)
    if any(len(c) != 32 or type(n) is not int or n <= 0 for c, n in chunks):
        raise FormatError("manifest has a malformed inline chunk entry")
    return chunks


@dataclass(frozen=True, slots=True)
class Manifest:
    """An immutable snapshot of a tree of files plus what is known about it."""

    model: str
    files: tuple[FileEntry, ...]
    parent: str | None = None
    message: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)
    #: Edges to what this version came from (base model, datasets, runs); free-form dicts with a ``kind``.
    lineage: tuple[Mapping[str, Any], ...] = ()
    #: What the push found in pickle-based files, by path (``vault.safety``); written only when non-empty
    #: so manifests without pickles keep the bytes, and commit ids, they always had.
    safety: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_model_name(self.model)
        seen: set[str] = set()
        for entry in self.files:
            check_relative_path(entry.path)
            if entry.path in seen:
                raise FormatError(f"manifest lists {entry.path!r} twice")
            seen.add(entry.path)
            if entry.size < 0 or not _is_hex(entry.sha256, 64):
                raise FormatError(f"manifest entry for {entry.path!r} is malformed")
            if entry.chunks is not None and sum(n for _, n in entry.chunks) != entry.size:
                raise FormatError(f"the inline chunks of {entry.path!r} do not add up to its size")
        if not all(isinstance(v, Mapping) and path in seen for path, v in self.safety.items()):
            raise FormatError("manifest safety findings must name files of the version")
        if self.parent is not None and not _is_hex(self.parent, 40):
            raise FormatError(f"manifest parent {self.parent!r} is not a commit id")

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def has_inline(self) -> bool:
        return any(f.chunks is not None for f in self.files)

    def to_bytes(self) -> bytes:
        body: dict[str, Any] = {
            "format": INLINE_MANIFEST_FORMAT if self.has_inline else MANIFEST_FORMAT,
            "model": self.model,
            "parent": self.parent,
            "message": self.message,
            "metadata": dict(self.metadata),
            "lineage": [dict(x) for x in self.lineage],
            "files": [f._stored() for f in sorted(self.files, key=lambda f: f.path)],
        }
        if self.safety:
            body["safety"] = {k: dict(v) for k, v in self.safety.items()}
        return canonical_json(body)

    def commit_id(self) -> str:
        """40 hex characters: SHA-256 of the canonical manifest, truncated like a git/Hub revision."""
        return hashlib.sha256(self.to_bytes()).hexdigest()[:40]

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        try:
            raw = json.loads(data)
            fmt = raw.get("format")
            if fmt not in (MANIFEST_FORMAT, INLINE_MANIFEST_FORMAT):
                raise FormatError(f"unsupported manifest format {fmt!r}")
            files = tuple(
                FileEntry(f["path"], int(f["size"]), f["sha256"], _inline_chunks(f.get("chunks")))
                for f in raw["files"]
            )
            if any(f.chunks is not None for f in files) != (fmt == INLINE_MANIFEST_FORMAT):
                raise FormatError(f"manifest format {fmt} does not match its inline recipes")
            return cls(
                model=raw["model"],
                files=files,
                parent=raw.get("parent"),
                message=raw.get("message", ""),
                metadata={str(k): str(v) for k, v in raw.get("metadata", {}).items()},
                lineage=tuple(raw.get("lineage", ())),
                safety=dict(raw.get("safety", {})),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise FormatError(f"malformed manifest: {exc}") from exc


@dataclass(frozen=True, slots=True)
class FileRecipe:
    """The ordered chunks (id, raw length) that rebuild one file, keyed by the file's SHA-256."""

    sha256: str
    size: int
    chunks: tuple[tuple[bytes, int], ...]

    def __post_init__(self) -> None:
        if sum(n for _, n in self.chunks) != self.size:
            raise FormatError(f"recipe {self.sha256} chunk lengths do not add up to {self.size}")

    def to_bytes(self) -> bytes:
        if _is_hex(self.sha256, 64) and type(self.size) is int:
            # the same canonical bytes, spelled out: a push encodes a recipe per file, and the
            # generic encoder (sorting keys, escaping strings) cost more than the hashing
            chunks = ",".join(f'["{cid.hex()}",{n:d}]' for cid, n in self.chunks)
            return (
                f'{{"chunks":[{chunks}],"format":{RECIPE_FORMAT},"sha256":"{self.sha256}","size":{self.size}}}'
            ).encode()
        return canonical_json(
            {
                "format": RECIPE_FORMAT,
                "sha256": self.sha256,
                "size": self.size,
                "chunks": [[cid.hex(), n] for cid, n in self.chunks],
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> FileRecipe:
        try:
            raw = json.loads(data)
            if raw.get("format") != RECIPE_FORMAT:
                raise FormatError(f"unsupported recipe format {raw.get('format')!r}")
            chunks = tuple((bytes.fromhex(c), int(n)) for c, n in raw["chunks"])
            if any(len(c) != 32 or n <= 0 for c, n in chunks):
                raise FormatError("recipe has a malformed chunk entry")
            return cls(raw["sha256"], int(raw["size"]), chunks)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise FormatError(f"malformed recipe: {exc}") from exc

    @classmethod
    def named(cls, data: bytes, sha256: str) -> FileRecipe:
        """The plain recipe object stored under ``sha256``: it must be that file's recipe."""
        recipe = cls.from_bytes(data)
        if recipe.sha256 != sha256:
            raise FormatError(f"recipe {sha256} names another file")
        return recipe


def parse_metadata(pairs: Sequence[str]) -> dict[str, str]:
    """``key=value`` strings from the command line into a dict."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidInputError(f"metadata {pair!r} must be key=value")
        out[key] = value
    return out
