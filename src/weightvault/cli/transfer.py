"""``push`` and ``pull``: what the commands do, and running them without Typer.

Building Typer's command tree and parsing a line through it cost about a quarter of the CPU of a
small push or a cold pull (Typer, Click, Rich, and pydantic for Typer's coercion). The bodies of
the two commands live here, called by ``cli.app`` and by ``serve``: the entry point
(``cli/entry.py``) offers every line here after the fast read paths, and a line this module
parses exactly as Click would (the two commands with their common options) runs the same body,
with the vault opened as the full path opens it (``cli.state``) and every failure reported as
``cli.app.main`` reports it (``cli.failures``). Any other line (an option or a form it does not
know, ``--help``, ``--with-base``, a server) returns False before anything runs: the full path
parses it, and its usage errors stay the only ones.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from weightvault.vault.earlyhash import EarlyHashes
    from weightvault.vault.vault import Vault

Bar = tuple[Callable[[int], None], Callable[[int], None]]

#: set by ``serve`` while the vault stack is imported and opened with the cyclic GC paused
_gc_paused = False
#: set by ``serve`` for a push: the source's large files, hashed while the vault stack loads
_early: EarlyHashes | None = None


def _pause_gc() -> None:
    """Importing the vault stack creates ~100,000 objects that live as long as the process and
    form no garbage worth collecting; the collector's passes over them during the imports and
    again at exit cost about a fifth of a small push's CPU. Paused here, and ``_vault`` freezes
    them (never traversed again) and resumes collection before the command's work."""
    global _gc_paused
    gc.disable()
    _gc_paused = True


def _vault() -> Vault:
    """``STATE.vault()``; after a ``_pause_gc``, what start-up made is frozen and the GC resumes."""
    global _gc_paused
    from weightvault.cli.state import STATE

    try:
        return STATE.vault()
    finally:
        if _gc_paused:
            _gc_paused = False
            gc.freeze()
            gc.enable()


@contextmanager
def _silent() -> Iterator[Bar]:
    yield _ignore, _ignore


def _ignore(n: int) -> None:
    pass


def _progress(label: str, quiet: bool) -> AbstractContextManager[Bar]:
    """``cli.output.progress``; a quiet command does not load Rich for a bar it never draws."""
    if quiet:
        return _silent()
    from weightvault.cli.output import progress

    return progress(label, False)


def push(
    model: str,
    source: Path,
    *,
    version: str | None,
    message: str,
    meta: Sequence[str],
    allow_empty: bool,
    no_default_ignores: bool,
    base: str | None,
    refuse_unsafe: bool,
    as_json: bool,
    quiet: bool,
) -> None:
    """``weightvault push``: ``quiet`` is the command's or the global ``--quiet``."""
    from weightvault.cli import views
    from weightvault.core.manifest import parse_metadata

    metadata = parse_metadata(meta)
    with _progress("push", quiet or as_json) as (start, advance):
        vault = _vault()
        # early hashes come only with ``serve`` (never a server, whose client takes no such argument)
        send = vault.push if _early is None else partial(vault.push, early_hashes=_early)
        result = send(
            model,
            source,
            version=version,
            message=message,
            metadata=metadata,
            allow_empty=allow_empty,
            default_ignores=not no_default_ignores,
            base=base,
            refuse_unsafe=refuse_unsafe,
            progress=advance,
            on_start=start,
        )
    views.print_push(result, as_json, quiet)


def pull(
    ref: str,
    dest: Path,
    *,
    include: Sequence[str] | None,
    exclude: Sequence[str] | None,
    force: bool,
    provider: str | None,
    link_mode: str | None,
    as_json: bool,
    quiet: bool,
) -> int:
    """``weightvault pull`` (without ``--with-base``); returns the exit code."""
    from weightvault.cli import views

    with _progress("pull", quiet or as_json) as (start, advance):
        result = _vault().pull(
            ref,
            dest,
            include=include,
            exclude=exclude,
            force=force,
            provider=provider,
            progress=advance,
            on_start=start,
            link_mode=link_mode,
        )
    return views.print_pull(result, dest, bool(include or exclude), as_json, quiet)


# ---- the line, parsed as Click would ---------------------------------------------------------

#: global options before the command that take a value (``cli.app.main_options``)
_GLOBAL_VALUED = {"--home": "home", "--config": "config", "--cache-dir": "cache_dir"}
#: per command: option -> (field, repeatable) for options with a value; flags -> field
_VALUED: dict[str, dict[str, tuple[str, bool]]] = {
    "push": {
        "--version": ("version", False),
        "-v": ("version", False),
        "--message": ("message", False),
        "-m": ("message", False),
        "--meta": ("meta", True),
        "--base": ("base", False),
    },
    "pull": {
        "--include": ("include", True),
        "--exclude": ("exclude", True),
        "--provider": ("provider", False),
        "--link-mode": ("link_mode", False),
    },
}
_FLAGS: dict[str, dict[str, str]] = {
    "push": {
        "--allow-empty": "allow_empty",
        "--no-default-ignores": "no_default_ignores",
        "--refuse-unsafe": "refuse_unsafe",
        "--json": "as_json",
        "--quiet": "quiet",
        "-q": "quiet",
    },
    "pull": {"--force": "force", "--json": "as_json", "--quiet": "quiet", "-q": "quiet"},
}


@dataclass
class Line:
    """A ``push`` or ``pull`` command line: the global options, the two arguments, the options."""

    command: str = ""
    home: str | None = None
    config: str | None = None
    cache_dir: str | None = None
    quiet: bool = False  # the global --quiet
    args: list[str] = field(default_factory=list)
    values: dict[str, str] = field(default_factory=dict)
    lists: dict[str, list[str]] = field(default_factory=dict)
    flags: set[str] = field(default_factory=set)


def _value(opt: str, args: list[str], inline: str | None) -> str | None:
    """An option's value, when it is one this parser is sure Click reads the same way."""
    value = inline if inline is not None else (args.pop(0) if args else None)
    if not value or value.startswith("-"):
        return None  # Click would take a dash-led value (or report a missing one): the full path decides
    return value


def parse(argv: Sequence[str]) -> Line | None:
    """The line, when it is a ``push`` or ``pull`` this module runs; else None."""
    line = Line()
    args = list(argv)
    while args and args[0].startswith("-"):
        opt = args.pop(0)
        name, eq, inline = opt.partition("=")
        if opt in ("--quiet", "-q"):
            line.quiet = True
        elif name in _GLOBAL_VALUED:
            value = _value(name, args, inline if eq else None)
            if value is None:
                return None
            setattr(line, _GLOBAL_VALUED[name], value)
        else:
            return None
    if not args or args[0] not in _VALUED:
        return None
    line.command = args.pop(0)
    valued, flags = _VALUED[line.command], _FLAGS[line.command]
    while args:
        arg = args.pop(0)
        name, eq, inline = arg.partition("=")
        if arg in flags:
            line.flags.add(flags[arg])
        elif name in valued and (not eq or name.startswith("--")):
            value = _value(name, args, inline if eq else None)
            if value is None:
                return None
            key, repeated = valued[name]
            if repeated:
                line.lists.setdefault(key, []).append(value)
            else:
                line.values[key] = value  # Click: the last one wins
        elif not arg or arg.startswith("-"):
            return None
        else:
            line.args.append(arg)
    return line if len(line.args) == 2 else None


def serve(argv: Sequence[str]) -> bool:
    """Run a ``push`` or ``pull`` line here (exiting as the full path would); False, with nothing
    done, when the full path must parse it."""
    line = parse(argv)
    if line is None or "WEIGHTVAULT_SERVER" in os.environ:  # a server: Typer reads it as --server
        return False
    global _early
    if line.command == "push":
        _early = _start_hashing(line)
    try:
        return _serve(line)
    finally:
        if _early is not None:
            early, _early = _early, None
            early.close()


def _start_hashing(line: Line) -> EarlyHashes | None:
    """The whole-file SHA-256s of the push's large files, started now on a thread of their own:
    the imports and the vault's opening that follow hold one core for ~0.45 s; the hashes use the
    other (``vault.earlyhash``), and the pipeline takes them instead of reading the files again.
    None if they cannot start: the push then hashes every file, and reports any such problem
    (a home that cannot be found) as it always did."""
    from weightvault.vault.earlyhash import EarlyHashes

    try:
        home = Path(line.home or os.environ.get("WEIGHTVAULT_HOME") or "~/.weightvault")
        home = home.expanduser().absolute()
        return EarlyHashes(
            line.args[1],
            default_ignores="no_default_ignores" not in line.flags,
            stat_cache=home / "statcache.db",  # as ``load_settings`` places the home (``vault.state``)
        ).start()
    except (OSError, RuntimeError):  # RuntimeError: no home for ``~``, or no thread to be had
        return None


def _serve(line: Line) -> bool:
    from weightvault.cli.failures import reported
    from weightvault.cli.state import STATE

    STATE.home = Path(line.home) if line.home is not None else None
    STATE.config = Path(line.config) if line.config is not None else None
    STATE.cache_dir = Path(line.cache_dir) if line.cache_dir is not None else None
    STATE.quiet, STATE.server, STATE.token = line.quiet, None, None
    code = 0
    _pause_gc()
    with reported():
        quiet = line.quiet or "quiet" in line.flags
        if line.command == "push":
            push(
                line.args[0],
                Path(line.args[1]),
                version=line.values.get("version"),
                message=line.values.get("message", ""),
                meta=line.lists.get("meta", []),
                allow_empty="allow_empty" in line.flags,
                no_default_ignores="no_default_ignores" in line.flags,
                base=line.values.get("base"),
                refuse_unsafe="refuse_unsafe" in line.flags,
                as_json="as_json" in line.flags,
                quiet=quiet,
            )
        else:
            code = pull(
                line.args[0],
                Path(line.args[1]),
                include=line.lists.get("include"),
                exclude=line.lists.get("exclude"),
                force="force" in line.flags,
                provider=line.values.get("provider"),
                link_mode=line.values.get("link_mode"),
                as_json="as_json" in line.flags,
                quiet=quiet,
            )
    if code:
        raise SystemExit(code)
    return True
