"""``weightvault import dir PATH``: import a local Hub cache repo or ``save_pretrained`` folder.

Registered on the main app by ``cli/app.py``; its helpers are taken from there at call time.
(``import hf`` from a remote endpoint comes with the server.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from weightvault.cli.output import emit_json, progress, say

import_app = typer.Typer(
    help="Import models from Hugging Face Hub folders, pinned to their commits.", no_args_is_help=True
)


def _cli() -> Any:
    from weightvault.cli import app as cli

    return cli


@import_app.command("dir")
def import_dir(
    path: Annotated[
        Path,
        typer.Argument(help="A models--org--name cache folder, a snapshot, or a save_pretrained folder."),
    ],
    name: Annotated[
        str | None, typer.Option("--as", help="Model name in the vault (default: the repo id).")
    ] = None,
    revision: Annotated[
        str | None, typer.Option("--revision", help="Branch, tag or commit of a cache folder (default main).")
    ] = None,
    version: Annotated[str | None, typer.Option("--version", "-v", help="Version label.")] = None,
    refuse_unsafe: Annotated[
        bool, typer.Option("--refuse-unsafe", help="Refuse pickles that would run code when loaded.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary line.")] = False,
) -> None:
    """Store a local Hub folder as a version whose lineage pins the upstream repo and commit."""
    from weightvault.hub.importer import import_dir as run

    cli = _cli()
    with progress("import", quiet or as_json or cli.STATE.quiet) as (start, advance):
        result = run(
            cli.STATE.vault(),
            path,
            name=name,
            revision=revision,
            version=version,
            refuse_unsafe=refuse_unsafe,
            progress=advance,
            on_start=start,
        )
    if as_json:
        emit_json(result.to_json())
        return
    if quiet or cli.STATE.quiet:
        return
    v = result.version
    up = result.upstream or {}
    origin = f"{up.get('repo') or path}" + (f"@{up['commit']}" if up.get("commit") else "")
    what = "imported" if result.imported else "already imported as"
    say(f"{what} {v.model}@{v.label} (commit {v.commit[:12]}) from {origin}")
