"""Every CLI command with ``--server``: it works through the server, or it says in one line that it
is not available there (exit code of ConfigError). The table must name every command, so a new
command cannot be added without deciding what it does remotely."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import typer.main

from weightvault.cli.app import app
from weightvault.core.errors import ConfigError, exit_code_for

from ..cli.inproc import wv_in
from ..conftest import write_random
from .conftest import Served

LOCAL = exit_code_for(ConfigError("x"))

#: command -> (arguments, what it does through a server: "ok", "local" (says it is not available
#: there), or a piece of the server's one-line answer); ``{src}``, ``{out}``, ``{token_id}`` filled in
COMMANDS: dict[str, tuple[tuple[str, ...], str]] = {
    "push": (("walk/m", "{src}", "--version", "v1"), "ok"),
    "pull": (("walk/m@v1", "{out}"), "ok"),
    "ls": (("--json",), "ok"),
    "show": (("walk/m@v1", "--json"), "ok"),
    "tensors": (("walk/m@v1",), "local"),
    "lineage": (("walk/m@v1", "--json"), "local"),
    "verify": (("walk/m@v1",), "ok"),
    "stats": (("--json",), "ok"),
    "alias set": (("walk/m", "staging", "v1"), "ok"),
    "alias ls": (("walk/m",), "ok"),
    "alias rm": (("walk/m", "staging"), "ok"),
    "alias accept": (("walk/m", "staging"), "local"),  # alias pins live in the home next to the store
    "audit": (("--json",), "ok"),
    "token create": (("--principal", "walker", "--scope", "read", "--json"), "ok"),
    "token list": (("--json",), "ok"),
    "token revoke": (("{token_id}",), "ok"),
    "grant add": (("walker", "walk/*", "reader"), "ok"),
    "grant ls": ((), "ok"),
    "grant rm": (("walker", "walk/*"), "ok"),
    "grant public": (("walk/m",), "ok"),
    "grant protect": (("walk/m", "production"), "ok"),
    "gc": (("--dry-run", "--json"), "ok"),
    "sync": (("--json",), "configure replicas"),  # the served vault has none: see test_ops_api
    "repair": (("--json",), "configure replicas"),
    "recover": (("--json",), "ok"),
    "keys status": (("--json",), "ok"),
    "keys init": ((), "local"),
    "keys rotate": ((), "local"),
    "cache ls": ((), "local"),
    "cache prune": ((), "local"),
    "serve": (("--port", "1"), "local"),
    "import dir": (("{src}", "--as", "walk/imported"), "local"),
    "import hf": (("org/repo", "--revision", "0" * 40), "local"),
    "rm": (("walk/m@v1",), "ok"),
}


def _commands(group: Any, prefix: str = "") -> list[str]:
    names: list[str] = []
    for name, command in group.commands.items():
        full = f"{prefix} {name}".strip()
        names += _commands(command, full) if hasattr(command, "commands") else [full]
    return names


def test_every_command_is_in_the_table() -> None:
    assert sorted(_commands(typer.main.get_command(app))) == sorted(COMMANDS)


def test_every_command_works_through_the_server_or_says_it_does_not(
    served: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEIGHTVAULT_SERVER", served.url)
    monkeypatch.setenv("WEIGHTVAULT_TOKEN", served.admin)
    src = tmp_path / "src"
    write_random(src / "w.bin", 200_000, seed=1)
    home = tmp_path / "never-made"
    token_id = ""
    wrong: list[tuple[str, int, str]] = []
    for command, (args, expect) in COMMANDS.items():  # in table order: push first, rm last
        out = tmp_path / f"out-{command.replace(' ', '-')}"
        filled = [a.format(src=src, out=out, token_id=token_id) for a in args]
        r = wv_in(capsys, home, "-q", *command.split(), *filled)
        one_line = r.returncode == LOCAL and r.stderr.count("\n") == 1
        if expect == "ok":
            ok = r.returncode == 0
        elif expect == "local":
            ok = one_line and "not available through a server" in r.stderr
        else:
            ok = one_line and expect in r.stderr
        if not ok:
            wrong.append((command, r.returncode, r.stderr))
        if command == "token create":
            token_id = str(json.loads(r.stdout)["id"])
    assert wrong == [], "\n".join(map(str, wrong))
    assert not home.exists()
