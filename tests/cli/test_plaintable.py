"""``cli.plaintable.draw``: ``ls MODEL``'s table written without Rich is Rich's table byte for
byte (as ``cli.output`` draws it into a pipe), and everything it cannot vouch for is left to Rich."""

from __future__ import annotations

import io
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console
from rich.table import Table

from weightvault.cli import plaintable
from weightvault.cli.output import _UNBOUNDED, table


def rich_text(title: str, headers: tuple[str, ...], rows: list[list[str]]) -> str:
    """What ``cli.output``'s console prints for ``cli.output.table`` into a pipe."""
    buf = io.StringIO()
    console = Console(file=buf, width=_UNBOUNDED)
    t: Table = table(*headers, title=title)
    for row in rows:
        t.add_row(*row)
    console.print(t)
    return buf.getvalue()


@pytest.fixture(autouse=True)
def _a_pipe(monkeypatch: pytest.MonkeyPatch) -> None:
    """stdout as ``ls`` sees it in a pipe: not a terminal, UTF-8, no variable forcing colours."""
    monkeypatch.setattr("sys.stdout", io.TextIOWrapper(io.BytesIO(), encoding="utf-8"))
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE"):
        monkeypatch.delenv(name, raising=False)


#: printable ASCII but ``[`` and ``:``, spaces leading and trailing included
safe = st.text(alphabet=string.ascii_letters + string.digits + " ./_-,=()'\"!?@#%&*+<>{}]|\\~^$", max_size=14)
times = st.datetimes().map(lambda d: d.strftime("%Y-%m-%d %H:%M:%S"))
HEADERS = ("label", "commit", "created (UTC)", "size", "files", "aliases", "message")


@settings(max_examples=300, deadline=None)
@given(
    st.text(alphabet=string.ascii_lowercase + "/-_.", min_size=1, max_size=20),
    st.lists(st.tuples(safe, safe, times, safe, safe, safe, safe), max_size=6),
)
def test_a_plain_table_is_richs_byte_for_byte(title: str, rows: list[tuple[str, ...]]) -> None:
    cells = [list(r) for r in rows]
    drawn = plaintable.draw(title, HEADERS, cells, timed=frozenset({2}))
    assert drawn is not None
    assert drawn == rich_text(title, HEADERS, cells)


@pytest.mark.parametrize(
    "cell",
    [
        "[bold]x[/bold]",  # markup: Rich would print "x"
        "note :smile: here",  # an emoji code
        "ünïcode",  # a wide or combining character may take other than one column
        "tab\there",
        "two\nlines",
    ],
)
def test_what_rich_may_draw_differently_is_left_to_rich(cell: str) -> None:
    row = ["v1", "c" * 40, "2026-11-30 00:00:00", "1 B", "1", "", cell]
    assert plaintable.draw("m", HEADERS, [row], timed=frozenset({2})) is None
    colon = ["v1", "c" * 40, "2026-11-30 00:00:00", "1 B", "1", "a:b", ""]  # not a time column
    assert plaintable.draw("m", HEADERS, [colon], timed=frozenset({2})) is None


def test_a_terminal_or_a_forced_one_is_left_to_rich(monkeypatch: pytest.MonkeyPatch) -> None:
    row = ["v1", "c" * 40, "2026-11-30 00:00:00", "1 B", "1", "", "fine"]
    assert plaintable.draw("m", HEADERS, [row], timed=frozenset({2})) is not None
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert plaintable.draw("m", HEADERS, [row], timed=frozenset({2})) is None
    monkeypatch.delenv("FORCE_COLOR")
    monkeypatch.setattr("sys.stdout", io.TextIOWrapper(io.BytesIO(), encoding="ascii"))
    assert plaintable.draw("m", HEADERS, [row], timed=frozenset({2})) is None  # Rich draws ASCII boxes
