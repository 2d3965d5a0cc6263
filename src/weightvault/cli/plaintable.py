"""A table drawn exactly as ``cli.output.table`` draws it into a pipe, without Rich.

Rich lays out and renders about half a millisecond per row: ``ls MODEL`` of ten thousand versions
spent five CPU-seconds drawing its table. Into a pipe (no colours, the console as wide as any
row needs, see ``cli.output``) that table is plain text: every column as wide as its widest
cell, one space of padding each side, heavy lines under the header, the title centred above.
``draw`` writes that text only when it can be sure it is Rich's, byte for byte: printable ASCII
cells (one column each) with no ``[`` (Rich reads markup) and no ``:`` (emoji codes) outside the
columns the caller vouches for, a UTF-8 stdout that is not a terminal, nothing in the
environment that makes Rich draw for a terminal. Otherwise it returns None and the caller uses
Rich (tests compare the two).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Sequence

#: cli.output's console width for a pipe (``_UNBOUNDED``): a wider table would be folded
MAX_WIDTH = 1 << 16
#: what makes Rich draw for a terminal although stdout is not one
_TERMINAL_ENV = ("FORCE_COLOR", "TTY_COMPATIBLE")


def _plain(text: str, colons: bool) -> bool:
    return text.isascii() and text.isprintable() and "[" not in text and (colons or ":" not in text)


def piped() -> bool:
    """Whether stdout is a pipe or file that Rich would draw plain text into."""
    stream = sys.stdout
    encoding = (getattr(stream, "encoding", None) or "").lower().replace("-", "")
    return (
        encoding.startswith("utf")
        and not stream.isatty()
        and not any(name in os.environ for name in _TERMINAL_ENV)
    )


def draw(
    title: str, headers: Sequence[str], rows: Iterable[Sequence[str]], timed: frozenset[int] = frozenset()
) -> str | None:
    """The table as Rich prints it into a pipe, or None where Rich may draw it differently.
    ``timed``: columns whose cells are times of day, whose colons are no emoji codes."""
    if not piped() or not _plain(title, False) or not all(_plain(h, False) for h in headers):
        return None
    table = [list(r) for r in rows]
    widths = [len(h) for h in headers]
    for row in table:
        if len(row) != len(headers):
            return None
        for i, cell in enumerate(row):
            if not _plain(cell, i in timed):
                return None
            widths[i] = max(widths[i], len(cell))
    total = sum(widths) + 3 * len(widths) + 1
    if total > MAX_WIDTH or len(title) > total:
        return None
    spare = total - len(title)
    lines = [" " * (spare // 2) + title + " " * (spare - spare // 2)] if title else []
    lines.append("┏" + "┳".join("━" * (w + 2) for w in widths) + "┓")
    lines.append("┃" + "┃".join(f" {h:<{w}} " for h, w in zip(headers, widths, strict=True)) + "┃")
    lines.append("┡" + "╇".join("━" * (w + 2) for w in widths) + "┩")
    for row in table:
        lines.append("│" + "│".join(f" {c:<{w}} " for c, w in zip(row, widths, strict=True)) + "│")
    lines.append("└" + "┴".join("─" * (w + 2) for w in widths) + "┘")
    return "\n".join(lines) + "\n"
