"""The ``weightvault`` / ``wv`` command line (Typer + Rich).

Every failure the user can cause ends in one line on stderr and an exit code taken from
``core.errors.ERROR_TABLE``; tracebacks only with ``WEIGHTVAULT_DEBUG=1``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from weightvault.core.errors import WeightvaultError, exit_code_for
from weightvault.core.manifest import parse_metadata
from weightvault.core.types import VersionInfo
from weightvault.vault.vault import Vault

app = typer.Typer(
    name="weightvault",
    help="Versioned, verified, deduplicated storage for model weights.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
alias_app = typer.Typer(
    help="Movable names (production, staging, …) pointing at versions.", no_args_is_help=True
)
cache_app = typer.Typer(help="The local file cache pulls are served from.", no_args_is_help=True)
app.add_typer(alias_app, name="alias")
app.add_typer(cache_app, name="cache")
app.add_typer(__import__("weightvault.cli.keys", fromlist=["keys_app"]).keys_app, name="keys")

out = Console()
err = Console(stderr=True)


@dataclass
class State:
    home: Path | None = None
    config: Path | None = None
    quiet: bool = False
    _vault: Vault | None = None

    def vault(self) -> Vault:
        if self._vault is None:
            self._vault = Vault.open(self.home, config=self.config)
        return self._vault


STATE = State()


def _print_version(value: bool) -> None:
    if value:
        from weightvault import __version__

        out.print(f"weightvault {__version__}")
        raise typer.Exit(0)


@app.callback()
def main_options(
    home: Annotated[
        Path | None, typer.Option(help="Vault home (default $WEIGHTVAULT_HOME or ~/.weightvault).")
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="Config file (default $WEIGHTVAULT_CONFIG or HOME/config.yaml).")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or chatter.")] = False,
    version: Annotated[
        bool,
        typer.Option("--version", help="Print the version and exit.", callback=_print_version, is_eager=True),
    ] = False,
) -> None:
    STATE.home, STATE.config, STATE.quiet = home, config, quiet


# ---- helpers -------------------------------------------------------------------------------------


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


@contextmanager
def _progress(label: str, quiet: bool) -> Iterator[tuple[Callable[[int], None], Callable[[int], None]]]:
    """(start(total), advance(n)); the bar appears only once work starts, so errors stay one line."""
    if quiet or STATE.quiet:
        yield (lambda n: None), (lambda n: None)
        return
    bar = Progress(
        TextColumn(f"[bold]{label}"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err,
    )
    task = bar.add_task(label, total=None)

    def start(total: int) -> None:
        bar.update(task, total=total or None)
        bar.start()

    try:
        yield start, (lambda n: bar.advance(task, n))
    finally:
        bar.stop()


def _version_row(v: VersionInfo) -> list[str]:
    return [
        v.label,
        v.commit[:12],
        v.created.strftime("%Y-%m-%d %H:%M:%S"),
        _human(v.total_size),
        str(v.file_count),
        ",".join(v.aliases),
        v.message,
    ]


# ---- commands ------------------------------------------------------------------------------------


@app.command()
def push(
    model: Annotated[str, typer.Argument(help="Model name, NAME or NAMESPACE/NAME.")],
    source: Annotated[Path, typer.Argument(help="Folder (or single file) of weights.")],
    version: Annotated[
        str | None, typer.Option("--version", "-v", help="Version label (default: UTC timestamp).")
    ] = None,
    message: Annotated[str, typer.Option("--message", "-m")] = "",
    meta: Annotated[list[str] | None, typer.Option("--meta", help="key=value, repeatable.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Store a new version of MODEL from SOURCE."""
    metadata = parse_metadata(meta or [])
    with _progress("push", quiet or as_json) as (start, advance):
        result = STATE.vault().push(
            model,
            source,
            version=version,
            message=message,
            metadata=metadata,
            progress=advance,
            on_start=start,
        )
    if as_json:
        _emit_json(
            {
                "version": result.version.to_json(),
                "bytes_read": result.bytes_read,
                "bytes_written": result.bytes_written,
                "chunks_total": result.chunks_total,
                "chunks_new": result.chunks_new,
                "seconds": result.seconds,
                "replication": result.replication,
            }
        )
    elif not (quiet or STATE.quiet):
        v = result.version
        err.print(
            f"pushed [bold]{v.model}@{v.label}[/] commit {v.commit[:12]}: {_human(result.bytes_read)} read, "
            f"{_human(result.bytes_written)} new ({result.chunks_new}/{result.chunks_total} chunks) "
            f"in {result.seconds:.1f}s"
        )
    for name, state in result.replication.items():
        if state.startswith("error"):
            err.print(f"warning: replica {name}: {state}; run `weightvault sync`", markup=False)


@app.command()
def pull(
    ref: Annotated[
        str, typer.Argument(help="MODEL[@REV]: REV is a label, alias or commit id; default latest.")
    ],
    dest: Annotated[Path, typer.Argument(help="Destination folder.")],
    include: Annotated[
        list[str] | None, typer.Option("--include", help="Glob of files to pull, repeatable.")
    ] = None,
    exclude: Annotated[
        list[str] | None, typer.Option("--exclude", help="Glob of files to skip, repeatable.")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite destination files that differ.")] = False,
    provider: Annotated[
        str | None,
        typer.Option("--provider", help="Replica to read first (aws, gcp, azure, …); others follow."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Materialise a version into DEST, verified."""
    with _progress("pull", quiet or as_json) as (start, advance):
        result = STATE.vault().pull(
            ref,
            dest,
            include=include,
            exclude=exclude,
            force=force,
            provider=provider,
            progress=advance,
            on_start=start,
        )
    for fallback in result.fallbacks:
        err.print(f"warning: {fallback}; served by another replica (run `weightvault repair`)", markup=False)
    if as_json:
        _emit_json(
            {
                "version": result.version.to_json(),
                "files": list(result.files),
                "bytes_total": result.bytes_total,
                "bytes_from_cache": result.bytes_from_cache,
                "bytes_from_store": result.bytes_from_store,
                "seconds": result.seconds,
                "fallbacks": list(result.fallbacks),
            }
        )
    elif not (quiet or STATE.quiet):
        v = result.version
        err.print(
            f"pulled [bold]{v.model}@{v.label}[/] into {dest}: {len(result.files)} files, "
            f"{_human(result.bytes_total)} ({_human(result.bytes_from_cache)} from cache) "
            f"in {result.seconds:.1f}s"
        )


@app.command("ls")
def ls(
    model: Annotated[str | None, typer.Argument(help="List this model's versions.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Models and their versions, newest first."""
    vault = STATE.vault()
    if model is not None:
        info = vault.model(model)
        if as_json:
            _emit_json(info.to_json())
            return
        table = Table("label", "commit", "created (UTC)", "size", "files", "aliases", "message", title=model)
        for v in info.versions:
            table.add_row(*_version_row(v))
        out.print(table)
        return
    models = vault.list_models()
    if as_json:
        _emit_json([m.to_json() for m in models])
        return
    if not models:
        err.print("no models yet: weightvault push MODEL FOLDER")
        return
    table = Table("model", "versions", "latest", "size", "aliases")
    for m in models:
        latest = m.versions[0] if m.versions else None
        table.add_row(
            m.name,
            ", ".join(v.label for v in m.versions),
            latest.label if latest else "",
            _human(latest.total_size) if latest else "",
            ", ".join(f"{a}→{lbl}" for a, lbl in m.aliases.items()),
        )
    out.print(table)


@app.command()
def show(
    ref: Annotated[str, typer.Argument(help="MODEL[@REV]")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Files, sizes, SHA-256, commit id and metadata of a version."""
    vault = STATE.vault()
    v = vault.show(ref)
    replicas = vault.replica_status(ref)
    if as_json:
        _emit_json({**v.to_json(with_files=True), "replicas": replicas})
        return
    out.print(f"[bold]{v.model}@{v.label}[/]  commit {v.commit}")
    out.print(
        f"created {v.created.isoformat()}  parent {v.parent or '-'}  aliases {', '.join(v.aliases) or '-'}"
    )
    if v.message:
        out.print(f"message: {v.message}")
    for k, val in sorted(v.metadata.items()):
        out.print(f"  {k} = {val}")
    table = Table("path", "size", "sha256")
    for f in v.files:
        table.add_row(f.path, _human(f.size), f.sha256)
    out.print(table)
    out.print(f"{v.file_count} files, {_human(v.total_size)}")
    out.print(
        "replicas: "
        + ", ".join(
            f"{n} {'complete' if st is True else 'incomplete' if st is False else st}"
            for n, st in replicas.items()
        )
    )


@app.command("rm")
def rm(
    ref: Annotated[str, typer.Argument(help="MODEL@VERSION to delete (data is reclaimed by gc).")],
) -> None:
    """Delete a version's label and aliases; `gc` reclaims its data."""
    v = STATE.vault().delete(ref)
    if not STATE.quiet:
        err.print(f"deleted {v.model}@{v.label}; run `weightvault gc` to reclaim space")


@app.command()
def verify(
    ref: Annotated[str | None, typer.Argument(help="MODEL[@REV]; default: everything.")] = None,
    read_data: Annotated[bool, typer.Option("--read-data", help="Re-read and re-hash every byte.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Check that versions can be rebuilt; non-zero exit on any missing or corrupt object."""
    with _progress("verify", as_json or not read_data) as (start, advance):
        start(0)
        report = STATE.vault().verify(ref, read_data=read_data, progress=advance)
    if as_json:
        _emit_json(report.to_json())
    else:
        shown = set()
        for name, problems in report.affected_versions.items():
            for p in problems:
                err.print(f"[red]{name}[/]: {p}")
                shown.add(p)
        for p in report.problems:
            if p not in shown:
                err.print(f"[red]store[/]: {p}")
        if report.ok:
            err.print(f"ok: {report.checked_versions} versions, {report.checked_chunks} chunks checked")
    if not report.ok:
        raise typer.Exit(6)


@app.command()
def gc(
    grace: Annotated[
        float | None, typer.Option(help="Grace period in seconds (default from settings).")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say what would be deleted.")] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Delete even while some objects in the store cannot be parsed.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Reclaim data no ref in the store reaches; repack sparse packs (safe while others push)."""
    report = STATE.vault().gc(grace_seconds=grace, dry_run=dry_run, force=force)
    if as_json:
        _emit_json(report.to_json())
    elif not STATE.quiet:
        err.print(
            ("gc --dry-run would delete: " if report.dry_run else "gc: deleted ")
            + f"{report.packs_deleted} packs (net {_human(report.bytes_freed)} freed; "
            f"{report.packs_repacked} repacked, {_human(report.bytes_rewritten)} of live data copied), "
            f"{report.manifests_deleted} manifests, {report.recipes_deleted} recipes, "
            f"{report.temp_files_deleted} temp files, "
            f"{report.secondary_objects_deleted} objects only on secondaries"
        )


@app.command()
def recover(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Rebuild the index from the store alone; non-zero exit when something could not be read."""
    report = STATE.vault().recover()
    if as_json:
        _emit_json(report.to_json())
    else:
        for problem in report.problems:
            err.print(f"[red]skipped[/] {problem}")
        err.print("recovered: " + ", ".join(f"{v} {k}" for k, v in report.counts.items()))
    if not report.ok:
        raise typer.Exit(6)


@app.command()
def sync(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Copy to every secondary replica what the primary has and it lacks (idempotent, resumable)."""
    with _progress("sync", as_json) as (start, advance):
        start(0)
        report = STATE.vault().sync(progress=advance)
    if as_json:
        _emit_json(report.to_json())
    else:
        for name, n in report.copied.items():
            err.print(f"{name}: {n} objects, {_human(report.bytes_copied[name])} copied")
        for name, errors in report.errors.items():
            for e in errors:
                err.print(f"error: {name}: {e}", markup=False)
    if not report.ok:
        raise typer.Exit(7)


@app.command()
def repair(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Re-read every object on every replica and rewrite missing or corrupt copies from good ones."""
    with _progress("repair", as_json) as (start, advance):
        start(0)
        report = STATE.vault().repair(progress=advance)
    if as_json:
        _emit_json(report.to_json())
    else:
        for item in report.repaired:
            err.print(f"repaired {item}", markup=False)
        for item in report.unrecoverable:
            err.print(f"error: no good copy of {item}", markup=False)
        err.print(f"checked {report.checked} objects, repaired {len(report.repaired)}")
    if not report.ok:
        raise typer.Exit(6)


@app.command()
def stats(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Counts and bytes of the store, index and cache."""
    data = STATE.vault().stats()
    if as_json:
        _emit_json(data)
        return
    for k, v in data.items():
        out.print(f"{k}: {_human(v) if k.endswith('bytes') else v}")


@alias_app.command("set")
def alias_set(
    model: str, alias: str, revision: Annotated[str, typer.Argument(help="Label, alias or commit id.")]
) -> None:
    """Point ALIAS of MODEL at REVISION."""
    v = STATE.vault().set_alias(model, alias, revision)
    if not STATE.quiet:
        err.print(f"{model}@{alias} -> {v.label} ({v.commit[:12]})")


@alias_app.command("rm")
def alias_rm(model: str, alias: str) -> None:
    """Remove ALIAS of MODEL."""
    STATE.vault().remove_alias(model, alias)


@alias_app.command("ls")
def alias_ls(model: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Aliases of MODEL."""
    aliases = STATE.vault().model(model).aliases
    if as_json:
        _emit_json(aliases)
        return
    for a, label in sorted(aliases.items()):
        out.print(f"{a} -> {label}")


@cache_app.command("ls")
def cache_ls(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Cached files, least recently used first."""
    cache = STATE.vault().cache
    entries = sorted(cache.entries(), key=lambda e: e.last_used) if cache else []
    if as_json:
        _emit_json(
            {
                "enabled": cache is not None,
                "max_bytes": cache.max_bytes if cache else 0,
                "total_bytes": sum(e.size for e in entries),
                "entries": [{"sha256": e.sha256, "size": e.size, "last_used": e.last_used} for e in entries],
            }
        )
        return
    if cache is None:
        err.print("cache is disabled")
        return
    for e in entries:
        out.print(f"{e.sha256}  {_human(e.size)}")
    out.print(f"{len(entries)} files, {_human(sum(e.size for e in entries))} of {_human(cache.max_bytes)}")


@cache_app.command("prune")
def cache_prune(
    max_size_gb: Annotated[
        float | None, typer.Option(help="Shrink to this size (default: the configured limit).")
    ] = None,
) -> None:
    """Evict least recently used files until the cache fits."""
    cache = STATE.vault().cache
    if cache is None:
        err.print("cache is disabled")
        return
    removed, freed = cache.prune(None if max_size_gb is None else int(max_size_gb * (1 << 30)))
    if not STATE.quiet:
        err.print(f"pruned {removed} files, {_human(freed)}")


def main() -> None:
    code = 0
    try:
        rc = app(standalone_mode=False)  # returns the code of a typer.Exit instead of raising it
        code = rc if isinstance(rc, int) else 0
    except WeightvaultError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(exit_code_for(exc))
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted", markup=False)
        sys.exit(130)
    except Exception as exc:
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            sys.exit(130)
        if os.environ.get("WEIGHTVAULT_DEBUG"):
            raise
        err.print(
            f"internal error: {type(exc).__name__}: {exc}", markup=False, highlight=False, soft_wrap=True
        )
        sys.exit(1)
    finally:
        if STATE._vault is not None:
            STATE._vault.close()
    sys.exit(code)


if __name__ == "__main__":
    main()
