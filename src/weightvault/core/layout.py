"""Object keys of the store layout (docs/format.md). Pure string functions, no I/O.

Every key that carries a model name has a fixed depth: a model is always two segments,
``<namespace>/<name>``, with ``_`` standing for "no namespace" (``_`` can never be a namespace:
name parts start with a letter or digit). So no key is ever a prefix-folder of another key, and
model, label and alias names allowed by ``core.names`` map to distinct keys.
"""

from __future__ import annotations

from weightvault.core.errors import WeightvaultError
from weightvault.core.names import check_label, check_model_name

CONFIG_KEY = "config"
PACKS = "packs/"
INDEX = "index/"
RECIPES = "recipes/"
MANIFESTS = "manifests/"
REFS = "refs/"
KEYS = "keys/"
JOURNAL = "journal/"
JOURNAL_HEAD = "journal-head"
LOCKS = "locks/"
NO_NAMESPACE = "_"
VERSIONS = "versions"
ALIASES = "aliases"
KEYRING_NAME = "keyring"
_KINDS = {VERSIONS: "version", ALIASES: "alias"}
_SEGMENTS = {v: k for k, v in _KINDS.items()}
#: digits of a journal sequence number in its key (zero-padded so keys sort by number)
JOURNAL_DIGITS = 16


def _fan(prefix: str, name: str) -> str:
    return f"{prefix}{name[:2]}/{name}"


def pack_key(pack_id: str) -> str:
    return _fan(PACKS, pack_id)


def index_key(pack_id: str) -> str:
    return _fan(INDEX, pack_id)


def recipe_key(sha256: str) -> str:
    return _fan(RECIPES, sha256)


def manifest_key(commit: str) -> str:
    return _fan(MANIFESTS, commit)


def model_path(model: str) -> str:
    """``ns/name`` for ``ns/name``; ``_/name`` for ``name``: always two segments."""
    ns, sep, name = check_model_name(model).rpartition("/")
    return f"{ns}/{name}" if sep else f"{NO_NAMESPACE}/{name}"


def model_from_path(ns: str, name: str) -> str:
    """The inverse of ``model_path``; raises ``InvalidNameError`` for anything it never makes."""
    model = name if ns == NO_NAMESPACE else f"{ns}/{name}"
    check_model_name(model)
    return model


def model_refs_prefix(model: str) -> str:
    """Every ref of one model, and of no other, starts with this."""
    return f"{REFS}{model_path(model)}/"


def version_ref_key(model: str, label: str) -> str:
    return f"{model_refs_prefix(model)}{VERSIONS}/{check_label(label)}"


def alias_ref_key(model: str, alias: str) -> str:
    return f"{model_refs_prefix(model)}{ALIASES}/{check_label(alias, 'alias')}"


def ref_key(model: str, kind: str, name: str) -> str:
    """``kind`` is ``"version"`` or ``"alias"``."""
    return version_ref_key(model, name) if kind == "version" else alias_ref_key(model, name)


def keyring_key(model: str) -> str:
    return f"{KEYS}{model_path(model)}/{KEYRING_NAME}"


def journal_key(seq: int) -> str:
    return f"{JOURNAL}{seq:0{JOURNAL_DIGITS}d}"


def lock_key(lock_id: str) -> str:
    return f"{LOCKS}{lock_id}"


def name_from_key(key: str) -> str:
    """The last segment: a pack id, a sha256 or a commit id."""
    return key.rpartition("/")[2]


def parse_ref_key(key: str) -> tuple[str, str, str] | None:
    """``refs/<ns>/<name>/versions/<label>`` -> (model, "version", label); aliases likewise;
    anything else (including keys of another format) -> None."""
    parts = key.split("/")
    if len(parts) != 5 or parts[0] != REFS.rstrip("/") or parts[3] not in _KINDS:
        return None
    try:
        model = model_from_path(parts[1], parts[2])
        check_label(parts[4])
    except WeightvaultError:
        return None
    return model, _KINDS[parts[3]], parts[4]


def parse_keyring_key(key: str) -> str | None:
    """``keys/<ns>/<name>/keyring`` -> the model; else None."""
    parts = key.split("/")
    if len(parts) != 4 or parts[0] != KEYS.rstrip("/") or parts[3] != KEYRING_NAME:
        return None
    try:
        return model_from_path(parts[1], parts[2])
    except WeightvaultError:
        return None


def parse_journal_key(key: str) -> int | None:
    name = key[len(JOURNAL) :] if key.startswith(JOURNAL) else ""
    return int(name) if len(name) == JOURNAL_DIGITS and name.isdigit() else None
