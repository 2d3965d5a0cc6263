"""What the CLI prints: consoles, sizes, JSON, tables and progress bars.

Piped output is for copying and scripts, so nothing an identifier is part of is ever cut: when
stdout is not a terminal the console is as wide as any row needs. Progress bars only go to a
terminal and vanish when the command fails, so an error is always the one line it should be.
Rich's heavier modules (progress, tables) are imported only by the commands that draw them.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from rich.console import Console

if TYPE_CHECKING:
    from rich.table import Table

#: a console wider than any row: rich would otherwise cut piped tables at 80 columns
_UNBOUNDED = 1 << 16

out = Console(width=None if sys.stdout.isatty() else _UNBOUNDED)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def duration(seconds: float) -> str:
    """``3600`` -> ``1h``, ``90`` -> ``1m30s``: how long a grace period is, as a person reads it."""
    s = round(seconds)
    if s < 60:
        return f"{seconds:g}s"
    parts = [(s // 86400, "d"), (s % 86400 // 3600, "h"), (s % 3600 // 60, "m"), (s % 60, "s")]
    return "".join(f"{n}{unit}" for n, unit in parts if n)


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


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
