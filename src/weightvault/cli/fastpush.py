"""``push MODEL DIR`` into a local store without the vault stack (``vault.lightpush``): a plain
model, or an encrypted one whose keys ``vault.lightkeys`` opens as the full path would.

The entry point (``cli/entry.py``) offers every command line here after ``cli.fastpull``. A
push line that ``cli.transfer`` parses as Click would, with no option but ``--version``/``-v``,
``--message``/``-m``, ``--json`` and ``--quiet``/``-q`` (and the global ``--home``,
``--config``, ``--cache-dir`` and ``--quiet``), into a home ``vault.lightpush`` can serve, is
done here and reported by the same function as the full command (``cli.views.print_push``).
Every other line, and every doubt before the push writes (an option, a setting or an
environment variable this path does not handle, a name or label the full path would refuse, a
source it cannot scan, keys it does not open itself), returns False with nothing written and nothing
printed: the full path runs and reports any error. A failure once the push writes is reported
here as the full path reports it (``cli.failures``): the same pipeline raised it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from weightvault.cli.transfer import Line
    from weightvault.core.types import PushResult
    from weightvault.vault.earlyhash import EarlyHashes

#: the options of ``push`` this path serves (``cli.transfer``'s field names)
_VALUES = frozenset({"version", "message"})
_FLAGS = frozenset({"as_json", "quiet"})


def parse(argv: Sequence[str]) -> Line | None:
    """The line, when it is a ``push`` this path serves; else None."""
    from weightvault.cli.transfer import parse as parse_line

    line = parse_line(argv)
    if (
        line is None
        or line.command != "push"
        or line.lists
        or not set(line.values) <= _VALUES
        or not line.flags <= _FLAGS
    ):
        return None
    return line


def serve(argv: Sequence[str]) -> bool:
    """Do the push here; False (nothing written, nothing printed) when the full path must."""
    line = parse(argv)
    if line is None:
        return False
    from weightvault.cli.transfer import _start_hashing

    early = _start_hashing(line)
    try:
        return _serve(line, early)
    finally:
        if early is not None:
            early.close()


def _serve(line: Line, early: EarlyHashes | None) -> bool:
    import time

    from weightvault.registry.snapshot import SnapshotUnavailable

    try:
        from weightvault.vault.lightpush import find_home
        from weightvault.vault.source import scan_source

        where = find_home(line.home, line.config, line.cache_dir)
        seen_ns = time.time_ns()  # before any stat: the stat cache's "racily clean" rule needs it
        files = scan_source(Path(line.args[1]), default_ignores=True)
    except Exception:  # any doubt at all: the full path decides (and reports)
        return False
    if not files:
        return False  # the full path refuses an empty source
    from weightvault.cli.failures import reported
    from weightvault.vault.lightpush import light_push

    as_json = "as_json" in line.flags
    quiet = line.quiet or "quiet" in line.flags

    def push(
        advance: Callable[[int], None] | None = None, start: Callable[[int], None] | None = None
    ) -> PushResult:
        return light_push(
            where,
            line.args[0],
            files,
            seen_ns,
            version=line.values.get("version"),
            message=line.values.get("message", ""),
            progress=advance,
            on_start=start,
            early=early,
        )

    with reported():
        try:
            if quiet or as_json:
                result = push()
            else:
                from weightvault.cli.output import progress

                with progress("push", False) as (start, advance):
                    result = push(advance, start)
        except SnapshotUnavailable:
            return False
        from weightvault.cli import views

        views.print_push(result, as_json, quiet)
    return True
