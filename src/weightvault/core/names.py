"""Validation of every name that reaches storage: model ids, labels, aliases and file paths.

Names come from users, manifests and source trees; none is trusted. The rules for model ids
follow the Hugging Face Hub's so that Hub ids can be used unchanged.
"""

from __future__ import annotations

import re

from weightvault.core.errors import InvalidNameError, UnsafePathError

_MODEL_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")
_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f]")
MAX_MODEL_NAME = 96


def check_model_name(name: str) -> str:
    """``name`` or ``namespace/name`` under the Hub's rules; returns it unchanged."""
    if not isinstance(name, str) or not name:
        raise InvalidNameError("model name must not be empty")
    if len(name) > MAX_MODEL_NAME:
        raise InvalidNameError(f"model name {name!r} is longer than {MAX_MODEL_NAME} characters")
    parts = name.split("/")
    if len(parts) > 2:
        raise InvalidNameError(f"model name {name!r} may contain at most one '/' (namespace/name)")
    for part in parts:
        if not _MODEL_PART.match(part) or part.endswith((".", "-")):
            raise InvalidNameError(
                f"invalid model name {name!r}: use letters, digits, '-', '_', '.', "
                "not starting or ending with '-' or '.'"
            )
        if ".." in part or "--" in part:
            raise InvalidNameError(f"invalid model name {name!r}: '..' and '--' are not allowed")
    if name.endswith(".git"):
        raise InvalidNameError(f"invalid model name {name!r}: must not end with '.git'")
    return name


def check_label(label: str, what: str = "version label") -> str:
    """Version labels and alias names: one path segment, so they are safe as object keys."""
    if not isinstance(label, str) or not _LABEL.match(label) or ".." in label:
        raise InvalidNameError(
            f"invalid {what} {label!r}: 1-128 of letters, digits, '.', '_', '+', '-', starting alphanumeric"
        )
    return label


def check_new_name(label: str, what: str = "version label") -> str:
    """A label or alias about to be created: also not ``latest``, which always means the newest
    version (a label or alias of that name would silently change what ``@latest`` pulls)."""
    check_label(label, what)
    if label == "latest":
        raise InvalidNameError(f"{what} 'latest' is reserved: MODEL@latest always means the newest version")
    return label


def check_relative_path(path: str) -> str:
    """A file path inside a version: relative, '/'-separated, no way out of its root."""
    if not isinstance(path, str) or not path:
        raise UnsafePathError("empty file path")
    if "\x00" in path:
        raise UnsafePathError(f"file path {path!r} contains a NUL byte")
    if "\\" in path:
        raise UnsafePathError(f"file path {path!r} contains a backslash")
    if path.startswith("/"):
        raise UnsafePathError(f"file path {path!r} is absolute")
    if _DRIVE.match(path):
        raise UnsafePathError(f"file path {path!r} starts with a drive letter")
    control = _CONTROL.search(path) is not None  # one pass over the path, not a test per character
    for part in path.split("/"):
        if part in ("", ".", ".."):
            raise UnsafePathError(f"file path {path!r} has an empty, '.' or '..' component")
        if control and _CONTROL.search(part):
            raise UnsafePathError(f"file path {path!r} contains a control character")
    return path
