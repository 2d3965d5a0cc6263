"""The ``weightvault`` / ``wv`` command line (Typer + Rich).

Every failure the user can cause ends in one line on stderr and an exit code of its family
(``core.errors.ERROR_TABLE``; usage errors exit 2); tracebacks only with ``WEIGHTVAULT_DEBUG=1``.
Start-up stays cheap: the vault, Rich's tables and progress bars are imported by the commands
that use them, not when the CLI loads. docs/cli.md is the user's side of this contract.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from weightvault.cli import access, formats, importer, keys, lineage, server, transfer
from weightvault.cli.failures import reported
from weightvault.cli.output import duration, emit_json, human, out, progress, say
from weightvault.cli.state import STATE as STATE  # the invocation's options, read by every command

REV = "MODEL[@REV]"  # a metavar: printed as it is, not read as Rich markup

app = typer.Typer(
    name="weightvault",
    help="Versioned, verified, deduplicated storage for model weights.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
alias_app = typer.Typer(
    help="Movable names (production, staging, …) pointing at versions.", no_args_is_help=True
)
cache_app = typer.Typer(help="The local file cache pulls are served from.", no_args_is_help=True)
app.add_typer(alias_app, name="alias")
app.add_typer(cache_app, name="cache")
app.add_typer(keys.keys_app, name="keys")
app.command("tensors")(formats.tensors)
app.command("lineage")(lineage.lineage)
app.add_typer(importer.import_app, name="import")
access.register(app)
server.register(app)

JSON_HELP = "Print the result as JSON on stdout."
QUIET_HELP = "No progress bar or summary line."


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
    cache_dir: Annotated[
        Path | None,
        typer.Option(
            "--cache-dir",
            help="Local file cache folder (default: the cache_directory setting, or HOME/cache).",
        ),
    ] = None,
    server: Annotated[
        str | None,
        typer.Option(
            envvar="WEIGHTVAULT_SERVER", help="Work through a weightvault server (http[s]://host:port)."
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(envvar="WEIGHTVAULT_TOKEN", help="API token for --server.", show_default=False),
    ] = None,
    version: Annotated[
        bool,
        typer.Option("--version", help="Print the version and exit.", callback=_print_version, is_eager=True),
    ] = False,
) -> None:
    STATE.home, STATE.config, STATE.quiet = home, config, quiet
    STATE.server, STATE.token, STATE.cache_dir = server, token, cache_dir


def _quiet(*flags: bool) -> bool:
    return STATE.quiet or any(flags)


# ---- commands ------------------------------------------------------------------------------------


@app.command()
def push(
    model: Annotated[str, typer.Argument(help="Model name, NAME or NAMESPACE/NAME.")],
    source: Annotated[Path, typer.Argument(help="Folder (or single file) of weights.")],
    version: Annotated[
        str | None,
        typer.Option(
            "--version", "-v", help="Version label (default: UTC timestamp). Always makes a new version."
        ),
    ] = None,
    message: Annotated[str, typer.Option("--message", "-m", help="What changed in this version.")] = "",
    meta: Annotated[list[str] | None, typer.Option("--meta", help="key=value, repeatable.")] = None,
    allow_empty: Annotated[
        bool, typer.Option("--allow-empty", help="Allow a version with no files.")
    ] = False,
    no_default_ignores: Annotated[
        bool,
        typer.Option(
            "--no-default-ignores",
            help="Also push VCS and cache folders (.git, .hg, .svn, __pycache__, .cache/huggingface, …).",
        ),
    ] = False,
    base: Annotated[
        str | None, typer.Option("--base", help="MODEL@REV this version was fine-tuned from (lineage).")
    ] = None,
    refuse_unsafe: Annotated[
        bool, typer.Option("--refuse-unsafe", help="Refuse pickles that would run code when loaded.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help=QUIET_HELP)] = False,
) -> None:
    """Store a new version of MODEL from SOURCE (nothing new when the files equal the latest version)."""
    transfer.push(
        model,
        source,
        version=version,
        message=message,
        meta=meta or [],
        allow_empty=allow_empty,
        no_default_ignores=no_default_ignores,
        base=base,
        refuse_unsafe=refuse_unsafe,
        as_json=as_json,
        quiet=_quiet(quiet),
    )


@app.command()
def pull(
    ref: Annotated[
        str,
        typer.Argument(
            metavar=REV, help="REV is a label, alias or commit id (or a unique prefix); default latest."
        ),
    ],
    dest: Annotated[Path, typer.Argument(help="Destination folder (created with its parents).")],
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
    with_base: Annotated[
        bool, typer.Option("--with-base", help="Also pull the base model it builds on (into DEST/base).")
    ] = False,
    base_dest: Annotated[
        Path | None, typer.Option("--base-dest", help="Where --with-base puts the base (default DEST/base).")
    ] = None,
    link_mode: Annotated[
        str | None,
        typer.Option(
            "--link-mode",
            help="How cached files are placed: auto (clone, else copy), reflink, hardlink or copy.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help=QUIET_HELP)] = False,
) -> None:
    """Materialise a version into DEST, verified: all of it, or nothing (DEST is left as it was)."""
    if with_base:
        from weightvault.cli.lineage import pull_with_base

        pull_with_base(ref, dest, base_dest, include, exclude, force, provider, link_mode, as_json, quiet)
        return
    code = transfer.pull(
        ref,
        dest,
        include=include,
        exclude=exclude,
        force=force,
        provider=provider,
        link_mode=link_mode,
        as_json=as_json,
        quiet=_quiet(quiet),
    )
    if code:
        raise typer.Exit(code)


@app.command("ls")
def ls(
    model: Annotated[str | None, typer.Argument(help="List this model's versions.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Models and their versions, newest first."""
    from weightvault.cli import views

    vault = STATE.vault()
    if model is not None:
        views.print_model(vault.model(model), model, as_json)
    else:
        views.print_models(vault.list_models(), as_json)


@app.command()
def show(
    ref: Annotated[str, typer.Argument(metavar=REV, help="The version; default the latest.")],
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Files, sizes, SHA-256, commit id and metadata of a version."""
    from weightvault.cli import views

    vault = STATE.vault()
    v = vault.show(ref)
    views.print_version(v, vault.replica_status(ref), as_json)


@app.command("rm")
def rm(
    ref: Annotated[
        str,
        typer.Argument(
            metavar="MODEL@VERSION",
            help="The version to delete, by label or commit id (not by alias); gc reclaims its data.",
        ),
    ],
    primary_only: Annotated[
        bool,
        typer.Option("--primary-only", help="Delete from the primary store only, not from the replicas."),
    ] = False,
) -> None:
    """Delete a version, its label and every alias pointing at it; `gc` reclaims its data."""
    v = STATE.vault().delete(ref, primary_only=primary_only)
    if not STATE.quiet:
        gone = f" and its aliases {', '.join(v.aliases)}" if v.aliases else ""
        say(f"deleted {v.model}@{v.label} (commit {v.commit}){gone}; run `weightvault gc` to reclaim space")


@app.command()
def verify(
    ref: Annotated[
        str | None, typer.Argument(metavar=REV, help="One model or version; default everything.")
    ] = None,
    read_data: Annotated[bool, typer.Option("--read-data", help="Re-read and re-hash every byte.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Check that versions can be rebuilt; exit 6 on any missing or corrupt object."""
    with progress("verify", as_json or not read_data) as (start, advance):
        start(0)
        report = STATE.vault().verify(ref, read_data=read_data, progress=advance)
    if as_json:
        emit_json(report.to_json())
    else:
        shown: set[str] = set()
        for name, problems in report.affected_versions.items():
            for p in problems:
                line = p if p.startswith(f"{name}:") else f"{name}: {p}"
                say(line)
                shown.add(p)
        for p in report.problems:
            if p not in shown:
                say(f"store: {p}")
        if report.ok:
            say(f"ok: {report.checked_versions} versions, {report.checked_chunks} chunks checked")
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
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Reclaim data no ref in the store reaches; repack sparse packs (safe while others push)."""
    vault = STATE.vault()
    report = vault.gc(grace_seconds=grace, dry_run=dry_run, force=force)
    period = vault.gc_status()["grace_seconds"] if grace is None else grace  # a server's, through it
    if as_json:
        emit_json({**report.to_json(), "grace_seconds": period})
    elif not STATE.quiet:
        say(
            ("gc --dry-run would delete: " if report.dry_run else "gc: deleted ")
            + f"{report.packs_deleted} packs (net {human(report.bytes_freed)} freed; "
            f"{report.packs_repacked} repacked, {human(report.bytes_rewritten)} of live data copied), "
            f"{report.manifests_deleted} manifests, {report.recipes_deleted} recipes, "
            f"{report.temp_files_deleted} temp files, "
            f"{report.secondary_objects_deleted} objects only on secondaries; nothing modified within "
            f"the grace period of {duration(period)} was touched"
        )


@app.command()
def recover(as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False) -> None:
    """Rebuild the index from the store alone; non-zero exit when something could not be read."""
    report = STATE.vault().recover()
    if as_json:
        emit_json(report.to_json())
    else:
        for problem in report.problems:
            say(f"skipped {problem}")
        say("recovered: " + ", ".join(f"{v} {k}" for k, v in report.counts.items()))
    if not report.ok:
        raise typer.Exit(6)


@app.command()
def sync(as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False) -> None:
    """Copy to every secondary replica what the primary has and it lacks (idempotent, resumable)."""
    with progress("sync", as_json) as (start, advance):
        start(0)
        report = STATE.vault().sync(progress=advance)
    if as_json:
        emit_json(report.to_json())
    else:
        for name, n in report.copied.items():
            say(f"{name}: {n} objects, {human(report.bytes_copied[name])} copied")
        for name, errors in report.errors.items():
            for e in errors:
                say(f"error: {name}: {e}")
    if not report.ok:
        raise typer.Exit(7)


@app.command()
def repair(as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False) -> None:
    """Re-read every object on every replica and rewrite missing or corrupt copies from good ones."""
    with progress("repair", as_json) as (start, advance):
        start(0)
        report = STATE.vault().repair(progress=advance)
    if as_json:
        emit_json(report.to_json())
    else:
        for item in report.repaired:
            say(f"repaired {item}")
        for item in report.unrecoverable:
            say(f"error: no good copy of {item}")
        say(f"checked {report.checked} objects, repaired {len(report.repaired)}")
    if not report.ok:
        raise typer.Exit(6)


@app.command()
def stats(as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False) -> None:
    """Counts and bytes of the store, index and cache."""
    data = STATE.vault().stats()
    if as_json:
        emit_json(data)
        return
    for k, v in data.items():
        out.print(f"{k}: {human(v) if k.endswith('bytes') else v}", markup=False, highlight=False)


@alias_app.command("set")
def alias_set(
    model: Annotated[str, typer.Argument(help="Model name.")],
    alias: Annotated[str, typer.Argument(help="Alias to create or move (production, staging, …).")],
    revision: Annotated[str, typer.Argument(help="Label, alias or commit id.")],
) -> None:
    """Point ALIAS of MODEL at REVISION."""
    v = STATE.vault().set_alias(model, alias, revision)
    if not STATE.quiet:
        say(f"{model}@{alias} -> {v.label} ({v.commit})")


@alias_app.command("rm")
def alias_rm(
    model: Annotated[str, typer.Argument(help="Model name.")],
    alias: Annotated[str, typer.Argument(help="Alias to remove (the version stays).")],
) -> None:
    """Remove ALIAS of MODEL; the version it points at stays."""
    STATE.vault().remove_alias(model, alias)
    if not STATE.quiet:
        say(f"removed alias {model}@{alias}")


@alias_app.command("accept")
def alias_accept(
    model: Annotated[str, typer.Argument(help="Model name.")],
    alias: Annotated[str, typer.Argument(help="Alias whose ref in the store was refused as rolled back.")],
) -> None:
    """Accept the store's ALIAS of MODEL as it is, although older than one this home has seen."""
    v = STATE.local_vault("alias accept").accept_alias(model, alias)
    if not STATE.quiet:
        say(
            f"{model}@{alias} -> {v.label} ({v.commit})"
            if v is not None
            else f"{model}@{alias} is not in the store"
        )


@alias_app.command("ls")
def alias_ls(
    model: Annotated[str, typer.Argument(help="Model name.")],
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Aliases of MODEL."""
    aliases = STATE.vault().model(model).aliases
    if as_json:
        emit_json(aliases)
        return
    for a, label in sorted(aliases.items()):
        out.print(f"{a} -> {label}", markup=False, highlight=False)


@cache_app.command("ls")
def cache_ls(as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False) -> None:
    """Cached files, least recently used first."""
    cache = STATE.local_vault("cache ls").cache
    entries = sorted(cache.entries(), key=lambda e: e.last_used) if cache else []
    if as_json:
        emit_json(
            {
                "enabled": cache is not None,
                "max_bytes": cache.max_bytes if cache else 0,
                "total_bytes": sum(e.size for e in entries),
                "entries": [
                    {"sha256": e.sha256, "size": e.size, "last_used": e.last_used, "private": e.private}
                    for e in entries
                ],
            }
        )
        return
    if cache is None:
        say("cache is disabled")
        return
    for e in entries:
        out.print(f"{e.sha256}  {human(e.size)}", highlight=False)
    out.print(
        f"{len(entries)} files, {human(sum(e.size for e in entries))} of {human(cache.max_bytes)}",
        highlight=False,
    )


@cache_app.command("prune")
def cache_prune(
    max_size_gb: Annotated[
        float | None, typer.Option(help="Shrink to this size (default: the configured limit).")
    ] = None,
) -> None:
    """Evict least recently used files until the cache fits."""
    cache = STATE.local_vault("cache prune").cache
    if cache is None:
        say("cache is disabled")
        return
    removed, freed = cache.prune(None if max_size_gb is None else int(max_size_gb * (1 << 30)))
    if not STATE.quiet:
        say(f"pruned {removed} files, {human(freed)}")


# ---- entry point ---------------------------------------------------------------------------------


def main() -> None:
    """Run the CLI. Typer runs in standalone mode, so usage errors print the usage line and exit 2
    through whichever click it uses (bundled or standalone); our own errors are turned into one
    line (``cli.failures``)."""
    with reported():
        app(prog_name=Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "weightvault")


if __name__ == "__main__":
    main()
