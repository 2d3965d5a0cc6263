"""Safe formats on the command line: ``weightvault tensors`` (``show``'s pickle findings: ``cli.views``).

``tensors MODEL@REV [FILE]`` reads only the safetensors headers, by range, through the vault
(``Vault.tensors``). Registered on the main app by ``cli/app.py``; the vault of the invocation
comes from ``cli/state.py``.
"""

from __future__ import annotations

from typing import Annotated

import typer

from weightvault.cli.output import emit_json, human, out, say, table
from weightvault.cli.state import STATE


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
