"""The console scripts' entry point: ``--version`` is answered before Typer, Rich and the
commands load (building the command tree alone costs more than the whole answer); ``ls`` and
``show`` on a local home whose index is current are answered by ``cli.fastread`` from the index
alone; a ``pull`` whose files are all cached and linked into place is done by ``cli.fastpull``;
a plain model's ``push`` into a local home by ``cli.fastpush``; other ``push`` and ``pull``
lines run without Typer (``cli.transfer``); every other command line goes to ``cli.app``."""

from __future__ import annotations

import os
import sys


def main() -> None:
    # numpy (float-aware compression loads it) starts an OpenBLAS thread pool on import, half of
    # its ~0.1 s import; the CLI never multiplies matrices. Only a default: the caller's value wins.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    if sys.argv[1:] == ["--version"]:
        from weightvault import __version__

        sys.stdout.write(f"weightvault {__version__}\n")
        return
    from weightvault.cli.fastread import serve

    if serve(sys.argv[1:]):
        return
    from weightvault.cli.fastpull import serve as pull

    if pull(sys.argv[1:]):
        return
    from weightvault.cli.fastpush import serve as push

    if push(sys.argv[1:]):
        return
    from weightvault.cli.transfer import serve as transfer

    if transfer(sys.argv[1:]):
        return
    from weightvault.cli.app import main as run

    run()


if __name__ == "__main__":
    main()
