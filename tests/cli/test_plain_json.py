"""``cli.plain.dumps``: the CLI's indented JSON, built with the C encoder, is the standard
library's ``json.dumps(value, indent=2, default=str)`` byte for byte; so is ``ls MODEL --json``
written row by row (``cli.views.model_json``)."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from weightvault.cli import views
from weightvault.cli.plain import dumps
from weightvault.core.types import ModelInfo, VersionInfo
from weightvault.registry import snapshot

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
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(keys, inner, max_size=4)
        | st.dictionaries(st.text(), inner, max_size=4)
    ),
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
        'line\nbreak \u2028 \x00 "quoted" ü',
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


def test_ls_model_prints_versions_with_lineage_or_safety_in_full(capsys: pytest.CaptureFixture[str]) -> None:
    """``print_model`` writes row by row only what a listing holds; anything more (lineage,
    pickle findings: never in a listing today) still prints in full, the same bytes."""
    when = dt.datetime(2026, 11, 29, 21, 0, tzinfo=dt.UTC)
    plain = VersionInfo("m", "v1", "c" * 40, when, "", {}, 1, 1, aliases=("prod",))
    for extra in ({}, {"lineage": ({"base": "b@v1"},)}, {"safety": {"a.pkl": {"verdict": "safe"}}}):
        info = ModelInfo("m", when, (replace(plain, **extra), plain), {"prod": "v1"})
        views.print_model(info, "m", as_json=True)
        assert capsys.readouterr().out == reference(info.to_json()) + "\n"


texts = st.text(max_size=12)
when = st.datetimes(timezones=st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=-5, minutes=-30))]))
listed_versions = st.builds(
    VersionInfo,
    model=st.just("org/m"),
    label=texts,
    commit=texts,
    created=when,
    message=texts,
    metadata=st.dictionaries(st.text(max_size=5), values, max_size=3),
    total_size=st.integers(min_value=0),
    file_count=st.integers(min_value=0),
    parent=st.none() | texts,
    aliases=st.lists(texts, max_size=3).map(tuple),
)


@settings(max_examples=300, deadline=None)
@given(
    st.text(max_size=8),
    when,
    st.lists(listed_versions, max_size=4).map(tuple),
    st.dictionaries(texts, texts, max_size=3),
)
def test_a_listing_written_row_by_row_is_the_same_bytes(
    name: str, created: dt.datetime, versions: tuple[VersionInfo, ...], aliases: dict[str, str]
) -> None:
    """``views.model_json`` (``ls MODEL --json`` without an object per version) against the
    standard library's encoding of ``ModelInfo.to_json()``."""
    versions = tuple(replace(v, model=name) for v in versions)
    info = ModelInfo(name, created, versions, aliases)
    rows = [views.listed(v) for v in versions]
    assert views.model_json(name, created, rows, aliases) == reference(info.to_json())


@settings(max_examples=300, deadline=None)
@given(st.datetimes(), st.sampled_from([None, dt.UTC, dt.timezone(dt.timedelta(hours=9, minutes=30))]))
def test_a_stored_timestamp_is_listed_as_the_full_path_lists_it(
    value: dt.datetime, tz: dt.tzinfo | None
) -> None:
    """``IndexSnapshot``'s ISO text of a stored timestamp, naive (as SQLite keeps it) or not, with
    or without microseconds, is that of ``VersionInfo.created``."""
    for stored in (str(value.replace(tzinfo=tz)), value.replace(tzinfo=tz).isoformat()):
        assert snapshot._iso(stored) == snapshot._when(stored).isoformat()
