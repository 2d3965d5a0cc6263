"""What the CLI prints: consoles, sizes, JSON, tables and progress bars.

Piped output is for copying and scripts, so nothing an identifier is part of is ever cut: when
stdout is not a terminal the console is as wide as any row needs. Progress bars only go to a
terminal and vanish when the command fails, so an error is always the one line it should be.
Rich's heavier modules (progress, tables) are imported only by the commands that draw them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from rich.console import Console

from weightvault.cli.plain import duration as duration
from weightvault.cli.plain import emit_json as emit_json
from weightvault.cli.plain import human as human

if TYPE_CHECKING:
    from rich.table import Table

#: a console wider than any row: rich would otherwise cut piped tables at 80 columns
_UNBOUNDED = 1 << 16

out = Console(width=None if sys.stdout.isatty() else _UNBOUNDED)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def say(text: str) -> None:
    """One plain line on stderr (no markup: names and paths may contain brackets)."""
    err.print(text, markup=False)


def warn(text: str) -> None:
    say(f"warning: {text}")


def table(*columns: str, title: str | None = None) -> Table:
    from rich.table import Table

    t = Table(title=title)
    for c in columns:
        t.add_column(c, overflow="fold")
    return t


@contextmanager
def progress(label: str, quiet: bool) -> Iterator[tuple[Callable[[int], None], Callable[[int], None]]]:
    """(start(total), advance(n)); a bar only on a terminal, shown once work starts and erased
    if the command fails."""
    if quiet or not err.is_terminal:
        yield (lambda n: None), (lambda n: None)
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    bar = Progress(
        TextColumn(f"[bold]{label}"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err,
    )
    task = bar.add_task(label, total=None)

    def start(total: int) -> None:
        bar.update(task, total=total or None)
        bar.start()

    try:
        yield start, (lambda n: bar.advance(task, n))
    except BaseException:
        bar.live.transient = True
        raise
    finally:
        bar.stop()
