"""The README's command lines are a promise: each line of its Use section runs, in order, and every
flag any README command line shows exists."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer.main

from weightvault.cli.app import app

from ..conftest import write_random
from .inproc import wv_in

README = Path(__file__).resolve().parents[2] / "README.md"


def _code_lines(section: str | None = None) -> list[str]:
    """The ``weightvault …`` lines of the README's bash blocks (of one ``## section`` if given)."""
    text = README.read_text()
    if section is not None:
        text = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    lines: list[str] = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line.startswith(("weightvault ", "wv ")):
                lines.append(line)
    return lines


def _expand(line: str) -> list[list[str]]:
    """The commands of a synopsis line: optional parts taken (the first of alternatives), then
    split at ``;`` and at ``|`` (used between commands as "or")."""
    while "[" in line:
        line = re.sub(r"\[([^\[\]]*)\]", lambda m: m.group(1).split(" | ")[0], line)
    return [shlex.split(part) for part in re.split(r"\s[;|]\s", line)]


def test_every_line_of_the_use_section_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    src = tmp_path / "models" / "llama-7b"
    write_random(src / "model-00001-of-00002.safetensors", 300_000, seed=1)
    write_random(src / "model-00002-of-00002.safetensors", 200_000, seed=2)
    write_random(src / "pytorch_model.bin", 100_000, seed=3)
    (src / "config.json").write_text('{"hidden_size": 64}')
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.yaml").write_text("encryption:\n  enabled: true\n")  # the keys lines need it
    lines = _code_lines("Use")
    assert len(lines) >= 15, lines
    first_label = ""
    ran = 0
    for line in lines:
        for argv in _expand(line):
            assert argv[0] in ("weightvault", "wv"), argv
            args = [
                {"MODEL": "llama-7b", "P": str(tmp_path / "new-kek.key")}.get(a, a).replace("@REV", "@v1.0.0")
                for a in argv[1:]
            ]
            args = [a.replace("20261123142501", first_label) if first_label else a for a in args]
            r = wv_in(capsys, home, *args)
            assert r.returncode == 0, (line, args, r.stderr)
            ran += 1
            if not first_label and args[0] == "push":
                first_label = wv_in(capsys, home, "ls", "llama-7b", "--json").stdout.split('"label": "')[1][
                    :14
                ]
    assert ran >= 18
    assert sorted(p.name for p in (tmp_path / "deployed" / "llama-7b").iterdir()) == sorted(
        p.name for p in src.iterdir()
    )


def _command(path: list[str]) -> typer.main.TyperCommand | typer.main.TyperGroup:
    cmd: object = typer.main.get_command(app)
    for name in path:
        assert isinstance(cmd, typer.main.TyperGroup) and name in cmd.commands, path
        cmd = cmd.commands[name]
    assert isinstance(cmd, typer.main.TyperCommand | typer.main.TyperGroup)
    return cmd


def test_every_flag_the_readme_shows_exists() -> None:
    lines = _code_lines()
    assert any("--primary-only" in line for line in lines)
    for line in lines:
        synopsis = re.sub(r"[\[\]]", " ", line)
        for part in re.split(r"\s[;|]\s", synopsis):
            words = shlex.split(part)[1:]
            path: list[str] = []
            cmd = _command(path)
            while words and isinstance(cmd, typer.main.TyperGroup) and words[0] in cmd.commands:
                path.append(words.pop(0))
                cmd = _command(path)
            known = {opt for p in cmd.params for opt in (*p.opts, *p.secondary_opts)}
            for word in words:
                if word.startswith("-"):
                    assert word in known, f"README shows {word} for `weightvault {' '.join(path)}`: {line}"
