"""``cli.plain.dumps``: the CLI's indented JSON, built with the C encoder, is the standard
library's ``json.dumps(value, indent=2, default=str)`` byte for byte."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from weightvault.cli.plain import dumps
from weightvault.core.types import ModelInfo, VersionInfo

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text()  # control characters, newlines, quotes, non-ASCII, surrogates
)
keys = st.text() | st.integers() | st.booleans() | st.none() | st.floats(allow_nan=False)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4)
    | st.lists(inner, max_size=3).map(tuple)
    | st.dictionaries(keys, inner, max_size=4)
    | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=30,
)


def reference(value: Any) -> str:
    return json.dumps(value, indent=2, default=str)


@settings(max_examples=200, deadline=None)
@given(values)
def test_any_json_value_encodes_to_the_same_bytes(value: Any) -> None:
    assert dumps(value) == reference(value)


def test_edge_shapes_and_objects_only_str_can_encode() -> None:
    when = dt.datetime(2026, 11, 29, 21, 0, tzinfo=dt.UTC)
    for value in (
        [],
        {},
        [[]],
        [{}],
        {"a": {}},
        [1, [2, [3, {}]]],
        {"x": {True: [None], 2: 2.5, None: "n", 1.5: 0}},
        (1, (2,)),
        when,
        {"when": when, "path": Path("/a b"), "list": [Path("x")]},
        "line\nbreak \u2028 \x00 \"quoted\" ü",
        float("nan"),
        [float("-inf"), 1e300, -0.0],
    ):
        assert dumps(value) == reference(value), value


def test_a_model_listing_is_the_same_bytes() -> None:
    """``ls MODEL --json``'s value: rows with and without metadata, aliases, lineage, safety."""
    when = dt.datetime(2026, 11, 29, 21, 0, tzinfo=dt.UTC)
    versions = tuple(
        VersionInfo(
            model="org/m",
            label=f"v{i:05d}",
            commit=f"{i:064x}",
            created=when,
            message="[bold]x[/bold] ü\n" if i % 2 else "",
            metadata={"team": "nlp", "n": [1, {"k": None}]} if i % 3 == 0 else {},
            total_size=1 << i % 40,
            file_count=i,
            parent=f"{i - 1:064x}" if i else None,
            aliases=("prod", "staging") if i % 7 == 0 else (),
            lineage=({"base": "org/b@v1", "relation": "finetune"},) if i % 5 == 0 else (),
            safety={"a.pkl": {"status": "safe", "globals": ["x.y"]}} if i % 11 == 0 else {},
        )
        for i in range(300)
    )
    info = ModelInfo("org/m", when, versions, {"prod": "v00000", "staging": "v00007"})
    assert dumps(info.to_json()) == reference(info.to_json())
    assert dumps([info.to_json(), info.to_json()]) == reference([info.to_json(), info.to_json()])
