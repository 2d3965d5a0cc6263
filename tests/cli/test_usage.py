"""Usage errors, help and completion, as a user meets them in a shell.

Usage errors are run in a Python where a standalone ``click`` cannot be imported: the Typer
releases our pins allow bundle their own click, and a CLI that imports the standalone one
crashes there (it did, with a ModuleNotFoundError traceback).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main

from weightvault.cli.app import app

NO_CLICK = (
    "import sys; sys.modules['click'] = None; "  # `import click` now fails, as where it is not installed
    "from weightvault.cli.app import main; sys.argv[0] = 'weightvault'; main()"
)


def run_without_click(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", NO_CLICK, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "100", **(env or {})},
        timeout=120,
    )


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("push",), "Missing argument"),
        (("nosuchcommand",), "No such command"),
        (("ls", "--bogus"), "No such option"),
        (("alias", "frob"), "No such command"),
        (("rm",), "Missing argument"),
        (("gc", "--grace", "soon"), "Invalid value"),
    ],
)
def test_usage_errors_print_usage_and_exit_2_without_standalone_click(
    tmp_path: Path, args: tuple[str, ...], needle: str
) -> None:
    r = run_without_click("--home", str(tmp_path / "home"), *args)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr
    assert "Usage: weightvault" in r.stderr and needle in r.stderr
    assert not (tmp_path / "home").exists()  # nothing was opened, let alone changed


def test_typer_in_use_bundles_its_click() -> None:
    """The pins allow only Typer releases that carry their own click (so the test above covers them)."""
    r = run_without_click("--version")
    assert r.returncode == 0 and r.stdout.startswith("weightvault "), r.stderr


def test_help_shows_the_revision_grammar() -> None:
    for cmd in ("pull", "show", "verify"):
        r = run_without_click(cmd, "--help")
        assert r.returncode == 0, r.stderr
        assert "MODEL[@REV]" in r.stdout, r.stdout
    r = run_without_click("rm", "--help")
    assert "MODEL@VERSION" in r.stdout and "--primary-only" in r.stdout


def _commands(group: typer.main.TyperGroup, prefix: str = "") -> list[tuple[str, object]]:
    out: list[tuple[str, object]] = []
    for name, cmd in group.commands.items():
        if isinstance(cmd, typer.main.TyperGroup):
            out += _commands(cmd, f"{prefix}{name} ")
        else:
            out.append((f"{prefix}{name}", cmd))
    return out


def test_every_option_and_argument_has_help() -> None:
    root = typer.main.get_command(app)
    assert isinstance(root, typer.main.TyperGroup)
    missing = []
    for name, cmd in [("(global)", root), *_commands(root)]:
        for param in cmd.params:  # type: ignore[attr-defined]
            if not getattr(param, "help", None):
                missing.append(f"{name} {param.name}")
    assert missing == []


def test_shell_completion_is_on(tmp_path: Path) -> None:
    r = run_without_click("--help", env={"COLUMNS": "200"})
    assert "--install-completion" in r.stdout and "--show-completion" in r.stdout
    r = subprocess.run(
        [sys.executable, "-c", NO_CLICK],
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "_WEIGHTVAULT_COMPLETE": "complete_bash",
            "COMP_WORDS": "weightvault pu",
            "COMP_CWORD": "1",
        },
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert {"push", "pull"} <= set(r.stdout.split()), r.stdout


def test_loading_the_cli_does_not_load_the_storage_stack() -> None:
    """Start-up stays cheap: the vault, the database layer and Rich's tables load with the commands
    that need them, not for `--help` or a usage error."""
    probe = (
        "import sys, weightvault.cli.app; "
        "print(sorted(m for m in ('sqlalchemy', 'weightvault.vault.vault', 'rich.table', 'rich.progress', "
        "'numpy', 'yaml') if m in sys.modules))"
    )
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "[]", (r.stdout, r.stderr)
