"""The read commands without the vault stack: ``ls [MODEL] [--json]`` and ``show REV [--json]``.

The entry point (``cli/entry.py``) offers every command line here first. A line this module
recognises, on a home that ``vault.fastopen`` can serve (local store, index current with the
store's journal, settings it fully understands), is answered from a read-only SQLite snapshot
and printed by the same functions as the full path (``cli.views``), so the output is the same
byte for byte. Everything else, including every error (an unknown model, a bad name, an
ambiguous revision), returns False before anything is printed, and the full path runs: its
messages and exit codes stay the only ones.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

Printer = Callable[[], None]


def _parse(argv: Sequence[str]) -> tuple[str | None, str, str | None, bool] | None:
    """(home, command, argument, --json) of a line this path serves, else None."""
    home: str | None = None
    args = list(argv)
    while args and args[0].startswith("-"):
        opt = args.pop(0)
        if opt in ("--quiet", "-q"):
            continue  # neither ls nor show prints less for it
        if opt == "--home" and args:
            home = args.pop(0)
        elif opt.startswith("--home="):
            home = opt.removeprefix("--home=")
        else:
            return None
        if not home:
            return None
    if not args or args[0] not in ("ls", "show"):
        return None
    command, rest = args[0], args[1:]
    as_json = "--json" in rest
    positional = [a for a in rest if a != "--json"]
    if any(a.startswith("-") for a in positional) or len(positional) > 1 or rest.count("--json") > 1:
        return None
    if command == "show" and not positional:
        return None
    return home, command, positional[0] if positional else None, as_json


def _prepare(home: str | None, command: str, arg: str | None, as_json: bool) -> Printer:
    """Everything read, nothing printed yet (a fallback must leave no output behind)."""
    from weightvault.cli import views
    from weightvault.core.errors import WeightvaultError
    from weightvault.core.names import check_model_name
    from weightvault.core.revision import parse_ref
    from weightvault.registry.snapshot import SnapshotUnavailable
    from weightvault.vault.fastopen import open_current

    try:
        if command == "ls" and arg is not None:
            check_model_name(arg)
        ref = parse_ref(arg) if command == "show" and arg is not None else None
    except WeightvaultError:
        raise SnapshotUnavailable("the full path reports a bad name") from None
    with open_current(home) as snap:
        if ref is not None:
            version = snap.with_files(snap.resolve(ref.model, ref.revision))
            replicas: dict[str, bool | str] = {"local": True}
            return lambda: views.print_version(version, replicas, as_json)
        if arg is not None:
            try:
                if as_json:  # ten thousand versions: no object per version (``views.model_json``)
                    text = views.model_json(arg, *snap.listing(arg))
                    return lambda: views.print_json(text)
                info = snap.model(arg)
            except WeightvaultError:
                raise SnapshotUnavailable("the full path reports it") from None
            return lambda: views.print_model(info, arg, as_json)
        models = [snap.model(name) for name in snap.model_names()]
        return lambda: views.print_models(models, as_json)


def serve(argv: Sequence[str]) -> bool:
    """Answer the command line here; False (nothing printed) when the full path must."""
    parsed = _parse(argv)
    if parsed is None:
        return False
    try:
        printer = _prepare(*parsed)
    except Exception:  # any doubt at all: the full path decides
        return False
    try:
        printer()
    except OSError as exc:  # a closed pipe, a full disk: as the full path reports it
        from weightvault.cli.oserrors import describe_os_error
        from weightvault.cli.output import say

        message, code = describe_os_error(exc)
        say(f"error: {message}")
        raise SystemExit(code) from None
    return True
