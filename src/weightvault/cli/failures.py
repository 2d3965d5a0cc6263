"""How a command line ends when something fails: one line on stderr and the exit code of its
family (``core.errors.ERROR_TABLE``); a traceback only with ``WEIGHTVAULT_DEBUG=1``.

Shared by the Typer app (``cli.app.main``) and the paths that run without Typer
(``cli.transfer``), so both report every failure the same way; it imports no framework (Rich
only when there is a line to print)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

from weightvault.core.errors import WeightvaultError, exit_code_for


def fail(message: str, code: int) -> NoReturn:
    from weightvault.cli.output import say

    say(f"error: {message}")
    sys.exit(code)


@contextmanager
def reported() -> Iterator[None]:
    """Run a command: its failures become one line and an exit code, and the vault it opened
    (``cli.state.STATE``) is closed whatever happens. ``SystemExit`` (a usage error, an
    explicit exit code) passes through as it is."""
    from weightvault.cli.state import STATE

    try:
        yield
    except WeightvaultError as exc:
        fail(str(exc), exit_code_for(exc))
    except OSError as exc:
        from weightvault.cli.oserrors import describe_os_error

        fail(*describe_os_error(exc))
    except KeyboardInterrupt:
        from weightvault.cli.output import say

        say("interrupted")
        sys.exit(130)
    except Exception as exc:
        if os.environ.get("WEIGHTVAULT_DEBUG"):
            raise
        fail(f"internal error: {type(exc).__name__}: {exc}", 1)
    finally:
        if STATE._vault is not None:
            vault, STATE._vault = STATE._vault, None
            vault.close()
