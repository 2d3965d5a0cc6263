"""Object keys of the store layout (docs/format.md). Pure string functions, no I/O."""

from __future__ import annotations

from weightvault.core.names import check_label, check_model_name

CONFIG_KEY = "config"
PACKS = "packs/"
INDEX = "index/"
RECIPES = "recipes/"
MANIFESTS = "manifests/"
REFS = "refs/"
VERSIONS_SEGMENT = "/versions/"
ALIASES_SEGMENT = "/aliases/"


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


def version_ref_key(model: str, label: str) -> str:
    return f"{REFS}{check_model_name(model)}{VERSIONS_SEGMENT}{check_label(label)}"


def alias_ref_key(model: str, alias: str) -> str:
    return f"{REFS}{check_model_name(model)}{ALIASES_SEGMENT}{check_label(alias, 'alias')}"


def name_from_key(key: str) -> str:
    """The last segment: a pack id, a sha256 or a commit id."""
    return key.rpartition("/")[2]


def parse_ref_key(key: str) -> tuple[str, str, str] | None:
    """``refs/<model>/versions/<label>`` -> (model, "version", label); aliases likewise; else None."""
    if not key.startswith(REFS):
        return None
    rest = key[len(REFS) :]
    for segment, kind in ((VERSIONS_SEGMENT, "version"), (ALIASES_SEGMENT, "alias")):
        model, sep, name = rest.rpartition(segment)
        if sep and model and name and "/" not in name:
            return model, kind, name
    return None
