"""``weightvault lineage MODEL@REV``: what a version came from and what builds on it.

Registered on the main app by ``cli/app.py``; the vault of the invocation comes from ``cli/state.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from weightvault.cli.output import emit_json, human, out, say
from weightvault.cli.state import STATE


def describe(edge: dict[str, Any]) -> str:
    """One lineage edge in words: a vault version, a Hub repo, or an upstream import."""
    if "commit" in edge and "model" in edge:
        where = f"{edge['model']}@{edge.get('label') or edge['commit'][:12]} ({edge['commit'][:12]})"
        if edge.get("present") is False:
            where += " [not in the index]"
    elif "repo" in edge:
        rev = edge.get("commit") or edge.get("revision")
        where = f"hub:{edge['repo']}" + (f"@{rev}" if rev else "")
    else:
        where = str({k: v for k, v in edge.items() if k not in ("depth", "of")})
    via = f" via {edge['via']}" if edge.get("via") else ""
    return f"{edge.get('kind', '?')} {where}{via}"


def lineage(
    ref: Annotated[str, typer.Argument(metavar="MODEL[@REV]", help="The version.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")] = False,
) -> None:
    """The lineage graph both ways: bases and upstream repos; adapters and fine-tunes built on it."""
    report = STATE.vault().lineage(ref)
    if as_json:
        emit_json(report.to_json())
        return
    v = report.version

    def line(text: str) -> None:
        out.print(text, markup=False, highlight=False)

    line(f"{v.model}@{v.label}  commit {v.commit}")
    line("comes from:" if report.ancestors else "comes from: nothing recorded")
    for edge in report.ancestors:
        line(f"{'  ' * edge['depth']}{describe(edge)}")
    line("built on by:" if report.descendants else "built on by: nothing in this vault")
    for d in report.descendants:
        via = f" via {d['via']}" if d.get("via") else ""
        line(f"{'  ' * d['depth']}{d['model']}@{d['label']} ({d['commit'][:12]}) on {d['of']}{via}")


def pull_with_base(
    ref: str,
    dest: Path,
    base_dest: Path | None,
    include: list[str] | None,
    exclude: list[str] | None,
    force: bool,
    provider: str | None,
    link_mode: str | None,
    as_json: bool,
    quiet: bool,
) -> None:
    """``pull --with-base``: the version into DEST and its base into DEST/base (or --base-dest);
    the include/exclude globs apply to both."""
    results = STATE.vault().pull_with_base(
        ref,
        dest,
        base_dest,
        include=include,
        exclude=exclude,
        force=force,
        provider=provider,
        link_mode=link_mode,
    )
    if as_json:
        emit_json(
            {
                role: {
                    "version": r.version.to_json(),
                    "dest": str(where),
                    "files": list(r.files),
                    "bytes_total": r.bytes_total,
                    "bytes_from_cache": r.bytes_from_cache,
                    "seconds": r.seconds,
                }
                for role, (r, where) in zip(("version", "base"), results, strict=True)
            }
        )
    elif not (quiet or STATE.quiet):
        for r, where in results:
            v = r.version
            say(f"pulled {v.model}@{v.label} into {where}: {len(r.files)} files, {human(r.bytes_total)}")
