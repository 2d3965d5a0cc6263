"""``weightvault keys``: set up the key provider, see which key protects what, rotate keys.

Registered on the main app by ``cli/app.py``; the vault of this invocation comes from
``cli/state.py``, JSON output and progress bars from ``cli/output.py``.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from weightvault.cli.output import emit_json, err, human, out, progress
from weightvault.cli.state import STATE
from weightvault.core.errors import InvalidInputError

keys_app = typer.Typer(
    help="Encryption keys: set up the key provider, show which key protects what, rotate.",
    no_args_is_help=True,
)


def _new_provider(
    configured: dict[str, Any],
    new_key_file: Path | None,
    new_kms_key_id: str | None,
    new_passphrase_env: str | None,
    new_key_env: str | None,
) -> dict[str, Any] | None:
    given = [x for x in (new_key_file, new_kms_key_id, new_passphrase_env, new_key_env) if x is not None]
    if len(given) > 1:
        raise InvalidInputError(
            "give at most one of --new-key-file, --new-kms-key-id, --new-passphrase-env, --new-key-env"
        )
    if new_key_file is not None:
        return {"type": "local_file", "path": str(new_key_file.expanduser().absolute())}
    if new_kms_key_id is not None:
        config: dict[str, Any] = {"type": "aws_kms", "key_id": new_kms_key_id}
        if configured.get("type") == "aws_kms":  # same account and endpoint unless configured otherwise
            for k in ("region", "endpoint_url", "profile"):
                if configured.get(k) is not None:
                    config[k] = configured[k]
        return config
    if new_passphrase_env is not None:
        return {
            "type": "passphrase",
            "passphrase_env": new_passphrase_env,
            "salt": base64.b64encode(os.urandom(16)).decode(),
        }
    if new_key_env is not None:
        return {"type": "env", "variable": new_key_env}
    return None


@keys_app.command("init")
def init(
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")] = False,
) -> None:
    """Check the configured key provider (creating its local key file, mode 0600, if absent)."""
    data = STATE.local_vault("keys init").init_keys()
    if as_json:
        emit_json(data)
        return
    if data["created_key_file"]:
        err.print(f"created key file {data['created_key_file']} (mode 0600); back it up", markup=False)
    err.print(
        f"key provider {data['provider']['type']} works: KEK {data['kek_id']}"
        + ("" if data["encryption_enabled"] else "; set encryption.enabled: true to encrypt new models"),
        markup=False,
    )


@keys_app.command("status")
def status(
    model: Annotated[str | None, typer.Argument(help="Only this model.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")] = False,
) -> None:
    """Which key protects what: per model, its KEK and data keys, and the live data under each."""
    data = STATE.vault().key_status(model)
    if as_json:
        emit_json(data)
        return
    from rich.table import Table

    table = Table("model", "provider", "KEK", "data key slot", "state", "live chunks", "live bytes")
    for m in data["models"]:
        live = m.get("live", {})
        if not m["encrypted"]:
            plain = live.get("0", {"chunks": 0, "bytes": 0})
            table.add_row(
                m["model"],
                "-",
                "not encrypted",
                "0",
                "plain",
                str(plain["chunks"]),
                human(plain["bytes"]),
            )
            continue
        provider = m["provider"]
        where = provider.get("path") or provider.get("key_id") or provider.get("variable") or ""
        first = True
        rows = [(str(k["slot"]), k["state"]) for k in m["data_keys"]]
        if "0" in live:
            rows.append(("0", "plain (pushed before encryption)"))
        for slot, state in rows:
            usage = live.get(slot)
            table.add_row(
                m["model"] if first else "",
                f"{provider.get('type')} {where}" if first else "",
                m["kek_id"] if first else "",
                slot,
                state,
                str(usage["chunks"]) if usage else ("?" if "usage_error" in m else "0"),
                human(usage["bytes"]) if usage else "",
            )
            first = False
        if "usage_error" in m:
            err.print(f"{m['model']}: {m['usage_error']}", markup=False)
        if m.get("new_domain_in_progress"):
            err.print(
                f"{m['model']}: move to a new domain unfinished; run `weightvault keys rotate {m['model']} "
                "--new-domain` again",
                markup=False,
            )
        if m.get("reencrypt_in_progress"):
            err.print(
                f"{m['model']}: re-encryption to slot {m['reencrypt_in_progress']} unfinished; "
                "run `weightvault keys rotate --reencrypt` again",
                markup=False,
            )
    out.print(table)
    out.print(
        f"encryption {'enabled' if data['encryption_enabled'] else 'disabled'} for new models; "
        f"configured provider: {data['configured_provider'].get('type')}"
    )


@keys_app.command("rotate")
def rotate(
    model: Annotated[
        str | None, typer.Argument(help="Only this model (default: every encrypted model).")
    ] = None,
    reencrypt: Annotated[
        bool,
        typer.Option(
            "--reencrypt",
            help="Also rewrite the data under new data keys (resumable; reads keep working). "
            "Encrypts models pushed before encryption was enabled.",
        ),
    ] = False,
    new_key_file: Annotated[
        Path | None, typer.Option(help="New KEK in this local key file (created, mode 0600, if absent).")
    ] = None,
    new_kms_key_id: Annotated[str | None, typer.Option(help="New KEK: this AWS KMS key.")] = None,
    new_passphrase_env: Annotated[
        str | None, typer.Option(help="New KEK from the passphrase in this environment variable.")
    ] = None,
    new_key_env: Annotated[
        str | None, typer.Option(help="New KEK from this environment variable (base64 of 32 bytes).")
    ] = None,
    new_domain: Annotated[
        bool,
        typer.Option(
            "--new-domain",
            help="Move MODEL to a new domain (new id key, MAC keys, chunker seed and data key; every "
            "version re-chunked and re-sealed, refs re-signed): for when a key holder leaves. Resumable.",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary line.")] = False,
) -> None:
    """Re-wrap data keys under a new KEK (seconds, any size); --reencrypt also rewrites the data;
    MODEL --new-domain replaces every key of the model."""
    if new_domain:
        if model is None:
            raise InvalidInputError(
                "--new-domain moves one model: name the model (keys rotate MODEL --new-domain)"
            )
        if reencrypt:
            raise InvalidInputError("--new-domain already re-encrypts every version; drop --reencrypt")
        if any(x is not None for x in (new_key_file, new_kms_key_id, new_passphrase_env, new_key_env)):
            raise InvalidInputError(
                "rotate the KEK first (keys rotate --new-…), then run keys rotate MODEL --new-domain"
            )
        _rotate_domain(model, as_json, quiet)
        return
    vault = STATE.local_vault("keys rotate")
    new = _new_provider(
        vault.keys.configured_config(), new_key_file, new_kms_key_id, new_passphrase_env, new_key_env
    )
    with progress("re-encrypt", quiet or as_json or not reencrypt) as (start, advance):
        start(0)
        report = vault.rotate_keys(model, reencrypt=reencrypt, new_provider=new, progress=advance)
    if as_json:
        emit_json(report.to_json())
    elif not (quiet or STATE.quiet):
        for name, entry in report.models.items():
            line = f"{name}: "
            if entry.get("rewrapped"):
                line += f"keys re-wrapped from KEK {entry['kek_from']} to {entry['kek_to']}"
            else:
                line += f"keys already under KEK {entry['kek_to']}"
            if "reencrypt" in entry:
                r = entry["reencrypt"]
                line += (
                    f"; data re-encrypted under slot {r['slot']}: {r['chunks_written']} chunks, "
                    f"{human(r['bytes_written'])} written"
                    + (f", {r['files_rekeyed']} plain files encrypted" if r["files_rekeyed"] else "")
                    + (
                        f", dropped slot(s) {', '.join(map(str, r['dropped_slots']))}"
                        if r["dropped_slots"]
                        else ""
                    )
                )
            err.print(line, markup=False)
        if not report.models:
            err.print("no encrypted models: nothing to rotate", markup=False)
        if report.replaced_key_file:
            err.print(f"new KEK written to {report.replaced_key_file}; the old one is gone", markup=False)
        if new is not None:
            err.print(
                f"set encryption.provider in your config to {report.provider} so new models use the new key",
                markup=False,
            )
        if reencrypt:
            err.print("run `weightvault gc` to delete the data sealed under the old keys", markup=False)
    if report.kept_old_key_file:
        err.print(
            f"warning: the old KEK stays in {report.kept_old_key_file} (the new one waits beside it, .new): "
            f"keyring copies that do not open with the new KEK yet: {'; '.join(report.old_key_needed_by)}; "
            "run `weightvault sync`, then rotate again",
            markup=False,
        )
    elif report.old_key_needed_by and new is not None:
        err.print(
            "warning: do not destroy the old KEK yet; keyring copies still need it: "
            + "; ".join(report.old_key_needed_by),
            markup=False,
        )
    for problem in report.replica_errors:
        err.print(f"warning: keyring not updated on replica {problem}; run `weightvault sync`", markup=False)


def _rotate_domain(model: str, as_json: bool, quiet: bool) -> None:
    vault = STATE.local_vault("keys rotate --new-domain")
    with progress("new domain", quiet or as_json) as (start, advance):
        start(0)
        report = vault.rotate_domain(model, progress=advance)
    if as_json:
        emit_json(report.to_json())
    elif not (quiet or STATE.quiet):
        err.print(
            f"{model}: moved to a new domain (id key {report.id_key_from} -> {report.id_key_to}): "
            f"{report.versions} versions, {report.aliases} aliases re-signed, {report.files_moved} files "
            f"re-chunked, {human(report.bytes_written)} written; commit ids changed, labels did not",
            markup=False,
        )
        err.print(
            "run `weightvault gc` (on the primary and every replica) to delete the old domain's data",
            markup=False,
        )
    for problem in report.replica_errors:
        err.print(f"warning: replica {problem}; run `weightvault sync`", markup=False)
