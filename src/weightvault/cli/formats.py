"""Safe formats on the command line: ``weightvault tensors`` and the pickle findings of ``show``.

``tensors MODEL@REV [FILE]`` reads only the safetensors headers, by range, through the vault
(``Vault.tensors``). Registered on the main app by ``cli/app.py``; the vault of the invocation
comes from ``cli/state.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from weightvault.cli.output import emit_json, human, out, say, table
from weightvault.cli.state import STATE

if TYPE_CHECKING:
    from weightvault.core.types import VersionInfo


def tensors(
    ref: Annotated[str, typer.Argument(metavar="MODEL[@REV]", help="The version.")],
    file: Annotated[str | None, typer.Argument(help="One safetensors file of the version.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")] = False,
) -> None:
    """Name, dtype, shape and size of every tensor, read from the headers alone."""
    listings = STATE.vault().tensors(ref, file)
    if as_json:
        emit_json([x.to_json() for x in listings])
        return
    if not listings:
        say("no safetensors files in this version")
        return
    for listing in listings:
        t = table("tensor", "dtype", "shape", "size", title=listing.path)
        for x in listing.header.tensors:
            t.add_row(x.name, x.dtype, "[" + ", ".join(map(str, x.shape)) + "]", human(x.nbytes))
        out.print(t)
        out.print(f"{len(listing.header.tensors)} tensors, {human(listing.header.data_len)}", highlight=False)


def print_safety(v: VersionInfo) -> None:
    """The pickle-based files of a version and what they would import when loaded."""
    for path, finding in sorted(v.safety.items()):
        flagged = [f"{m}.{n}" for m, n, judged in finding.get("globals", []) if judged != "safe"]
        detail = f": imports {', '.join(flagged)}" if flagged else ""
        out.print(f"pickle {finding.get('verdict')} {path}{detail}", markup=False, highlight=False)
        for problem in finding.get("problems", []):
            out.print(f"  {problem}", markup=False, highlight=False)
