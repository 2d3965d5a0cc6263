"""``weightvault import dir PATH`` (a local Hub cache repo or ``save_pretrained`` folder) and
``weightvault import hf REPO_ID`` (a repo of a Hub endpoint, through ``huggingface_hub``).

Registered on the main app by ``cli/app.py``; the vault of the invocation comes from ``cli/state.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from weightvault.cli.output import emit_json, progress, say
from weightvault.cli.state import STATE

if TYPE_CHECKING:
    from weightvault.hub.importer import ImportResult

# the options both imports take
AsName = Annotated[str | None, typer.Option("--as", help="Model name in the vault (default: the repo id).")]
VersionLabel = Annotated[str | None, typer.Option("--version", "-v", help="Version label.")]
RefuseUnsafe = Annotated[
    bool, typer.Option("--refuse-unsafe", help="Refuse pickles that would run code when loaded.")
]
AsJson = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary line.")]

import_app = typer.Typer(
    help="Import models from Hugging Face Hub folders, pinned to their commits.", no_args_is_help=True
)


@import_app.command("dir")
def import_dir(
    path: Annotated[
        Path,
        typer.Argument(help="A models--org--name cache folder, a snapshot, or a save_pretrained folder."),
    ],
    name: AsName = None,
    revision: Annotated[
        str | None, typer.Option("--revision", help="Branch, tag or commit of a cache folder (default main).")
    ] = None,
    version: VersionLabel = None,
    refuse_unsafe: RefuseUnsafe = False,
    as_json: AsJson = False,
    quiet: Quiet = False,
) -> None:
    """Store a local Hub folder as a version whose lineage pins the upstream repo and commit."""
    from weightvault.hub.importer import import_dir as run

    with progress("import", quiet or as_json or STATE.quiet) as (start, advance):
        result = run(
            STATE.local_vault("import dir"),
            path,
            name=name,
            revision=revision,
            version=version,
            refuse_unsafe=refuse_unsafe,
            progress=advance,
            on_start=start,
        )
    up = result.upstream or {}
    origin = f"{up.get('repo') or path}" + (f"@{up['commit']}" if up.get("commit") else "")
    _report(result, origin, as_json=as_json, quiet=quiet or STATE.quiet)


def _report(result: ImportResult, origin: str, *, as_json: bool, quiet: bool) -> None:
    """What both imports print: the JSON result, or one line saying what was stored."""
    if as_json:
        emit_json(result.to_json())
    elif not quiet:
        v = result.version
        what = "imported" if result.imported else "already imported as"
        say(f"{what} {v.model}@{v.label} (commit {v.commit[:12]}) from {origin}")


@import_app.command("hf")
def import_hf(
    repo: Annotated[str, typer.Argument(help="The Hub repo id (org/name).")],
    revision: Annotated[
        str | None,
        typer.Option("--revision", help="Branch, tag or commit (default main), pinned to its commit."),
    ] = None,
    include: Annotated[
        list[str] | None, typer.Option("--include", help="Only files matching this glob (repeatable).")
    ] = None,
    exclude: Annotated[
        list[str] | None, typer.Option("--exclude", help="Leave out files matching this glob (repeatable).")
    ] = None,
    name: AsName = None,
    endpoint: Annotated[
        str | None, typer.Option("--endpoint", help="The Hub endpoint (default https://huggingface.co).")
    ] = None,
    token: Annotated[
        str | None,
        typer.Option("--token", envvar="HF_TOKEN", help="Token for private repos.", show_default=False),
    ] = None,
    version: VersionLabel = None,
    refuse_unsafe: RefuseUnsafe = False,
    as_json: AsJson = False,
    quiet: Quiet = False,
) -> None:
    """Download a Hub repo at a pinned commit and store it; the same commit again is a no-op."""
    from weightvault.hub.remote import import_hf as run

    with progress("import", quiet or as_json or STATE.quiet) as (start, advance):
        result = run(
            STATE.local_vault("import hf"),
            repo,
            revision=revision,
            include=include or (),
            exclude=exclude or (),
            name=name,
            endpoint=endpoint,
            token=token,
            version=version,
            refuse_unsafe=refuse_unsafe,
            progress=advance,
            on_start=start,
        )
    up = result.upstream or {}
    origin = f"{repo}@{up.get('commit', '')[:12]}"
    _report(result, origin, as_json=as_json, quiet=quiet or STATE.quiet)
