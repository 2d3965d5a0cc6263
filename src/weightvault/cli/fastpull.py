"""``pull REV DEST`` from a local store without the vault stack (``vault.lightpull``), of a plain
model or of an encrypted one whose keys are local key files (``vault.lightkeys``).

The entry point (``cli/entry.py``) offers every command line here after ``cli.fastread``. A
pull this module recognises, on a home ``vault.fastopen`` can serve (its index current with the
store), is done here and reported by the same function as the full command
(``cli.views.print_pull``): from the cache by links into any destination, or from the store
into a new or empty folder. Every other line, and every doubt (an option this parser does not
know, ``--provider``, ``--with-base``, keys in doubt or not in a local file, a wrong or missing
key, a conflict, a pack gone from the store, any other error), returns False with nothing
written and nothing printed: the full path runs (and reports the error). A failed
verification and an interrupt are reported here, as the full path reports them
(``cli.failures``), after the pull undid everything it wrote.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from weightvault.core.revision import Ref
    from weightvault.core.types import PullResult
    from weightvault.registry.snapshot import IndexSnapshot
    from weightvault.vault.fastopen import FastHome

#: options of ``pull`` that take a value, and those that do not
_VALUED = ("--include", "--exclude", "--link-mode")
_FLAGS = ("--force", "--json", "--quiet", "-q")


@dataclass(slots=True)
class PullLine:
    """A ``pull`` command line as ``cli.app.pull`` receives it."""

    home: str | None = None
    quiet: bool = False
    ref: str = ""
    dest: str = ""
    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    link_mode: str | None = None
    force: bool = False
    as_json: bool = False


def parse(argv: Sequence[str]) -> PullLine | None:
    """The line, when it is a ``pull`` this path serves and parses exactly as Click would; else None."""
    line = PullLine()
    args = list(argv)
    while args and args[0].startswith("-"):
        opt = args.pop(0)
        if opt in ("--quiet", "-q"):
            line.quiet = True
        elif opt == "--home" and args and args[0] and not args[0].startswith("-"):
            line.home = args.pop(0)
        elif opt.startswith("--home=") and opt != "--home=":
            line.home = opt.removeprefix("--home=")
        else:
            return None
    if not args or args.pop(0) != "pull":
        return None
    positional: list[str] = []
    while args:
        arg = args.pop(0)
        name, eq, inline = arg.partition("=")
        if arg in _FLAGS:
            if arg == "--force":
                line.force = True
            elif arg == "--json":
                line.as_json = True
            else:
                line.quiet = True
        elif name in _VALUED:
            if eq:
                value = inline
            elif args:
                value = args.pop(0)
            else:
                return None
            if not value or value.startswith("-"):
                return None
            if name == "--include":
                line.include.append(value)
            elif name == "--exclude":
                line.exclude.append(value)
            else:
                line.link_mode = value
        elif arg.startswith("-") or not arg:
            return None
        else:
            positional.append(arg)
    if len(positional) != 2:
        return None
    line.ref, line.dest = positional
    return line


def _pull(
    line: PullLine,
    where: FastHome,
    snap: IndexSnapshot,
    ref: Ref,
    bar: tuple[Callable[[int], None], Callable[[int], None]] | None,
) -> PullResult:
    from pathlib import Path

    from weightvault.vault.lightpull import light_pull

    start, advance = bar if bar is not None else (_ignore, _ignore)
    return light_pull(
        where,
        snap,
        ref,
        Path(line.dest),
        include=line.include or None,
        exclude=line.exclude or None,
        force=line.force,
        link_mode=line.link_mode,
        progress=advance,
        on_start=start,
    )


def _ignore(n: int) -> None:
    pass


def serve(argv: Sequence[str]) -> bool:
    """Do the pull here; False (nothing written, nothing printed) when the full path must."""
    line = parse(argv)
    if line is None:
        return False
    from pathlib import Path

    try:
        from weightvault.core.revision import parse_ref
        from weightvault.vault.fastopen import PULL_ENV, PULL_KEYS, open_home

        ref = parse_ref(line.ref)
        where, snap = open_home(line.home, PULL_ENV, PULL_KEYS)
    except Exception:  # any doubt at all: the full path decides
        return False
    quiet = line.quiet or line.as_json
    from weightvault.cli.failures import reported
    from weightvault.core.errors import CorruptObjectError

    with snap, reported():
        if quiet:
            bar = None
        else:
            from weightvault.cli.output import progress

            bar = progress("pull", False)
        try:
            if bar is None:
                result = _pull(line, where, snap, ref, None)
            else:
                with bar as (start, advance):
                    result = _pull(line, where, snap, ref, (start, advance))
        except CorruptObjectError:  # the full path would read the same bytes and fail the same way
            raise
        except Exception:
            return False
    dest = Path(line.dest)
    try:
        from weightvault.cli import views

        views.print_pull(result, dest, bool(line.include or line.exclude), line.as_json, line.quiet)
    except OSError as exc:  # a closed pipe, a full disk: as the full path reports it
        from weightvault.cli.oserrors import describe_os_error
        from weightvault.cli.output import say

        message, code = describe_os_error(exc)
        say(f"error: {message}")
        raise SystemExit(code) from None
    return True
