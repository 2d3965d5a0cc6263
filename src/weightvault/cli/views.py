"""How ``ls``, ``show`` and ``pull`` print what they read or did.

Both the full command line (``cli/app.py``) and the fast paths (``cli/fastread.py``,
``cli/fastpull.py``) print through these functions, so the two cannot drift apart: same table,
same JSON, byte for byte. Nothing here imports Typer, the vault or the index, and a JSON answer
not even Rich.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from weightvault.cli.plain import INDENT, dumps_at, emit_json, human, scalar
from weightvault.core.types import ListedVersion, ModelInfo, PullResult, PushResult, VersionInfo

if TYPE_CHECKING:
    from datetime import datetime

NO_MODELS = "no models yet: weightvault push MODEL FOLDER"


#: the columns of ``ls MODEL``'s table (``version_row``); the third holds times of day
VERSION_COLUMNS = ("label", "commit", "created (UTC)", "size", "files", "aliases", "message")


def version_row(v: VersionInfo) -> list[str]:
    return [
        v.label,
        v.commit,
        v.created.strftime("%Y-%m-%d %H:%M:%S"),
        human(v.total_size),
        str(v.file_count),
        ",".join(v.aliases),
        v.message,
    ]


def listed(v: VersionInfo) -> ListedVersion:
    """The fields ``ls MODEL`` lists of a version."""
    return (
        v.label, v.commit, v.created.isoformat(), v.message, v.metadata,
        v.total_size, v.file_count, v.parent, v.aliases,
    )  # fmt: skip


#: what comes between the fields of a listed version, three containers deep
_NEXT = ",\n" + INDENT * 3


def _version_json(model: str, v: ListedVersion) -> str:
    """One version of ``ModelInfo.to_json()`` as ``dumps`` puts it in the document, with no
    ``lineage`` or ``safety`` (a listing has neither), written field by field: no dict per row."""
    label, commit, created, message, metadata, total_size, file_count, parent, aliases = v
    return "".join(
        (
            "{\n", INDENT * 3, '"model": ', model,
            _NEXT, '"label": ', scalar(label),
            _NEXT, '"commit": ', scalar(commit),
            _NEXT, '"created": ', scalar(created),
            _NEXT, '"message": ', scalar(message),
            _NEXT, '"metadata": ', dumps_at(metadata, 3) if metadata else "{}",
            _NEXT, '"total_size": ', scalar(total_size),
            _NEXT, '"file_count": ', scalar(file_count),
            _NEXT, '"parent": ', scalar(parent),
            _NEXT, '"aliases": ', dumps_at(list(aliases), 3) if aliases else "[]",
            _NEXT, '"lineage": []',
            _NEXT, '"safety": {}\n', INDENT * 2, "}",
        )
    )  # fmt: skip


def model_json(
    name: str, created: datetime, versions: Iterable[ListedVersion], aliases: Mapping[str, str]
) -> str:
    """``dumps(ModelInfo.to_json())`` of a model whose versions have no lineage or safety (as
    listed), byte for byte, built from plain tuples: ``ls MODEL --json`` of ten thousand
    versions spent most of its time making and converting an object per version."""
    model = scalar(name)
    rows = [_version_json(model, v) for v in versions]
    between = ",\n" + INDENT * 2
    listing = "[\n" + INDENT * 2 + between.join(rows) + "\n" + INDENT + "]" if rows else "[]"
    return "".join(
        (
            "{\n", INDENT, '"name": ', model,
            ",\n", INDENT, '"created": ', scalar(created.isoformat()),
            ",\n", INDENT, '"versions": ', listing,
            ",\n", INDENT, '"aliases": ', dumps_at(dict(aliases), 1) if aliases else "{}",
            "\n}",
        )
    )  # fmt: skip


def print_model(info: ModelInfo, title: str, as_json: bool) -> None:
    """``ls MODEL``: the model's versions, newest first (``title``: the name as given)."""
    if as_json:
        if any(v.lineage or v.safety or v.model != info.name for v in info.versions):  # not as listed
            emit_json(info.to_json())
        else:
            print_json(model_json(info.name, info.created, map(listed, info.versions), info.aliases))
        return
    from weightvault.cli.plaintable import draw

    # into a pipe, the same text without Rich's half a millisecond per row
    text = draw(title, VERSION_COLUMNS, [version_row(v) for v in info.versions], timed=frozenset({2}))
    if text is not None:
        sys.stdout.write(text)
        return
    from weightvault.cli.output import out, table

    t = table(*VERSION_COLUMNS, title=title)
    for v in info.versions:
        t.add_row(*version_row(v))
    out.print(t)


def print_json(text: str) -> None:
    """A JSON document already encoded, as ``emit_json`` prints one."""
    sys.stdout.write(text + "\n")


def print_models(models: Sequence[ModelInfo], as_json: bool) -> None:
    """``ls``: every model, its versions and aliases."""
    if as_json:
        emit_json([m.to_json() for m in models])
        return
    from weightvault.cli.output import out, say, table

    if not models:
        say(NO_MODELS)
        return
    t = table("model", "versions", "latest", "size", "aliases")
    for m in models:
        latest = m.versions[0] if m.versions else None
        t.add_row(
            m.name,
            ", ".join(v.label for v in m.versions),
            latest.label if latest else "",
            human(latest.total_size) if latest else "",
            ", ".join(f"{a}→{lbl}" for a, lbl in m.aliases.items()),
        )
    out.print(t)


def print_version(v: VersionInfo, replicas: Mapping[str, bool | str], as_json: bool) -> None:
    """``show``: a version's files, metadata, pickle findings and where it is complete."""
    if as_json:
        emit_json({**v.to_json(with_files=True), "replicas": dict(replicas)})
        return
    from weightvault.cli.output import out, table

    out.print(f"{v.model}@{v.label}  commit {v.commit}", markup=False, highlight=False)
    out.print(
        f"created {v.created.isoformat()}  parent {v.parent or '-'}  aliases {', '.join(v.aliases) or '-'}",
        markup=False,
        highlight=False,
    )
    if v.message:
        out.print(f"message: {v.message}", markup=False, highlight=False)
    for k, val in sorted(v.metadata.items()):
        out.print(f"  {k} = {val}", markup=False, highlight=False)
    t = table("path", "size", "sha256")
    for f in v.files:
        t.add_row(f.path, human(f.size), f.sha256)
    out.print(t)
    out.print(f"{v.file_count} files, {human(v.total_size)}", highlight=False)
    print_safety(v)
    out.print(
        "replicas: "
        + ", ".join(
            f"{n} {'complete' if st is True else 'incomplete' if st is False else st}"
            for n, st in replicas.items()
        ),
        markup=False,
        highlight=False,
    )


def print_safety(v: VersionInfo) -> None:
    """The pickle-based files of a version and what they would import when loaded."""
    from weightvault.cli.output import out

    for path, finding in sorted(v.safety.items()):
        flagged = [f"{m}.{n}" for m, n, judged in finding.get("globals", []) if judged != "safe"]
        detail = f": imports {', '.join(flagged)}" if flagged else ""
        out.print(f"pickle {finding.get('verdict')} {path}{detail}", markup=False, highlight=False)
        for problem in finding.get("problems", []):
            out.print(f"  {problem}", markup=False, highlight=False)


def _say(text: str) -> None:
    """``cli.output.say``, Rich loaded only when there is something to say."""
    from weightvault.cli.output import say

    say(text)


def print_pull(result: PullResult, dest: object, selecting: bool, as_json: bool, quiet: bool) -> int:
    """A pull's warnings and summary; the exit code: 3 (not found) when ``--include`` /
    ``--exclude`` (``selecting``) left no file to pull."""
    for fallback in result.fallbacks:
        _say(f"warning: {fallback}; served by another replica (run `weightvault repair`)")
    v = result.version
    for pattern in result.unmatched_includes:
        _say(f"warning: --include {pattern!r} matches no file of {v.model}@{v.label}")
    if as_json:
        emit_json(
            {
                "version": v.to_json(),
                "files": list(result.files),
                "bytes_total": result.bytes_total,
                "bytes_from_cache": result.bytes_from_cache,
                "bytes_from_store": result.bytes_from_store,
                "seconds": result.seconds,
                "fallbacks": list(result.fallbacks),
                "unmatched_includes": list(result.unmatched_includes),
                "link_mode": result.link_mode,
                "placement": dict(result.placement),
            }
        )
    elif not result.files and selecting:
        _say(f"nothing pulled: no file of {v.model}@{v.label} is selected by --include/--exclude")
    elif not quiet:
        placed = ", ".join(
            f"{n} by {'direct write' if how == 'written' else how}"
            for how, n in sorted(result.placement.items())
        )
        _say(
            f"pulled {v.model}@{v.label} into {dest}: {len(result.files)} files, "
            f"{human(result.bytes_total)} ({human(result.bytes_from_cache)} from cache) "
            f"in {result.seconds:.1f}s; placed {placed or 'nothing (all present)'}"
        )
    return 3 if not result.files and selecting else 0


def print_push(result: PushResult, as_json: bool, quiet: bool) -> None:
    """A push's summary (or its JSON), and a warning per replica it could not reach."""
    v = result.version
    if as_json:
        emit_json(
            {
                "version": v.to_json(),
                "unchanged": result.unchanged,
                "bytes_read": result.bytes_read,
                "bytes_written": result.bytes_written,
                "chunks_total": result.chunks_total,
                "chunks_new": result.chunks_new,
                "seconds": result.seconds,
                "replication": result.replication,
            }
        )
    elif result.unchanged:
        if not quiet:
            _say(f"{v.model} unchanged, same as {v.label} (commit {v.commit}); no new version")
    elif not quiet:
        _say(
            f"pushed {v.model}@{v.label} commit {v.commit}: {human(result.bytes_read)} read, "
            f"{human(result.bytes_written)} new ({result.chunks_new}/{result.chunks_total} chunks) "
            f"in {result.seconds:.1f}s"
        )
    for name, state in result.replication.items():
        if state.startswith("error"):
            _say(f"warning: replica {name}: {state}; run `weightvault sync`")
