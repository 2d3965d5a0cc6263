"""Safe formats on the command line: ``weightvault tensors`` and the pickle findings of ``show``.

``tensors MODEL@REV [FILE]`` reads only the safetensors headers, by range, through the vault
(``vault.tensors``). Registered on the main app by ``cli/app.py``; its helpers are taken from
there at call time.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from weightvault.core.types import VersionInfo


def _cli() -> Any:
    from weightvault.cli import app as cli

    return cli


def tensors(
    ref: Annotated[str, typer.Argument(help="MODEL[@REV]")],
    file: Annotated[str | None, typer.Argument(help="One safetensors file of the version.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Name, dtype, shape and size of every tensor, read from the headers alone."""
    cli = _cli()
    listings = cli.STATE.vault().tensors(ref, file)
    if as_json:
        cli._emit_json([x.to_json() for x in listings])
        return
    if not listings:
        cli.err.print("no safetensors files in this version")
        return
    for listing in listings:
        table = Table("tensor", "dtype", "shape", "size", title=listing.path)
        for t in listing.header.tensors:
            table.add_row(t.name, t.dtype, "[" + ", ".join(map(str, t.shape)) + "]", cli._human(t.nbytes))
        cli.out.print(table)
        cli.out.print(f"{len(listing.header.tensors)} tensors, {cli._human(listing.header.data_len)}")


def print_safety(v: VersionInfo) -> None:
    """The pickle-based files of a version and what they would import when loaded."""
    cli = _cli()
    for path, finding in sorted(v.safety.items()):
        verdict = str(finding.get("verdict"))
        colour = {"safe": "green", "unknown": "yellow", "dangerous": "red"}.get(verdict, "red")
        flagged = [f"{m}.{n}" for m, n, judged in finding.get("globals", []) if judged != "safe"]
        detail = f": imports {', '.join(flagged)}" if flagged else ""
        cli.out.print(f"pickle [{colour}]{verdict}[/] {escape(path + detail)}", highlight=False)
        for problem in finding.get("problems", []):
            cli.out.print(f"  {problem}", markup=False, highlight=False)
