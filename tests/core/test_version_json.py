"""``VersionInfo.to_json`` is what ``ls --json`` and ``show --json`` print: same keys, same order,
same values as the dataclass's own ``asdict`` gives (it is built by hand for speed)."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from weightvault.core.manifest import FileEntry
from weightvault.core.types import ModelInfo, VersionInfo


def reference(v: VersionInfo, with_files: bool) -> dict[str, Any]:
    """The serialisation as it was first written: ``asdict`` plus the JSON-friendly fields."""
    out = asdict(v)
    out["created"] = v.created.isoformat()
    out["aliases"] = list(v.aliases)
    out["lineage"] = list(v.lineage)
    if with_files:
        out["files"] = [f.to_json() for f in v.files]
    else:
        out.pop("files")
    return out


FULL = VersionInfo(
    model="org/m",
    label="v1",
    commit="ab" * 20,
    created=datetime(2026, 11, 29, 20, 1, 2, 345678, tzinfo=UTC),
    message="first [bold]one",
    metadata={"team": "nlp", "ü": "x"},
    total_size=123,
    file_count=2,
    parent="cd" * 20,
    aliases=("prod", "staging"),
    files=(FileEntry("a.bin", 100, "0" * 64), FileEntry("b/c.pkl", 23, "1" * 64)),
    lineage=({"kind": "base", "model": "org/base", "commit": "ef" * 20},),
    safety={
        "b/c.pkl": {"format": "raw", "verdict": "dangerous", "globals": [["builtins", "exec", "dangerous"]]}
    },
)
BARE = VersionInfo("m", "v2", "12" * 20, datetime(2026, 1, 1, tzinfo=UTC), "", {}, 0, 0)


def test_to_json_equals_the_dataclass_serialisation_key_for_key() -> None:
    for v in (FULL, BARE):
        for with_files in (False, True):
            got = v.to_json(with_files=with_files)
            want = reference(v, with_files)
            assert list(got) == list(want)
            assert json.dumps(got, indent=2) == json.dumps(want, indent=2)


def test_to_json_is_a_copy_the_caller_may_change() -> None:
    out = FULL.to_json(with_files=True)
    out["metadata"]["team"] = "changed"
    out["safety"]["b/c.pkl"]["globals"].append(["x", "y", "safe"])
    assert FULL.metadata["team"] == "nlp"
    assert FULL.safety["b/c.pkl"]["globals"] == [["builtins", "exec", "dangerous"]]
    model = ModelInfo("org/m", FULL.created, (FULL, BARE), {"prod": "v1"})
    assert model.to_json()["versions"] == [reference(FULL, False), reference(BARE, False)]
