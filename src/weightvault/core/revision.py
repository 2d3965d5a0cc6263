"""``MODEL@REV`` references: the one syntax every interface accepts."""

from __future__ import annotations

import re
from dataclasses import dataclass

from weightvault.core.errors import InvalidRevisionError
from weightvault.core.names import check_label, check_model_name

COMMIT_ID_LENGTH = 40
#: ``MODEL@latest`` is always the newest version: no label or alias may be named so.
LATEST = "latest"
MIN_COMMIT_PREFIX = 4
_HEX = re.compile(r"^[0-9a-f]+$")


@dataclass(frozen=True, slots=True)
class Ref:
    """A model and an optional revision: label, alias, commit id or prefix; ``None`` means latest."""

    model: str
    revision: str | None = None

    def __str__(self) -> str:
        return self.model if self.revision is None else f"{self.model}@{self.revision}"


def parse_ref(text: str) -> Ref:
    model, sep, rev = text.partition("@")
    check_model_name(model)
    if not sep:
        return Ref(model)
    if not rev:
        raise InvalidRevisionError(f"empty revision in {text!r}")
    check_label(rev, "revision")
    return Ref(model, rev)


def looks_like_commit(rev: str) -> bool:
    return MIN_COMMIT_PREFIX <= len(rev) <= COMMIT_ID_LENGTH and bool(_HEX.match(rev))
