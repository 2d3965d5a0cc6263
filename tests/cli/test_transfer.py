"""``push`` and ``pull`` without Typer (``cli/transfer.py``): a line it runs is read exactly as
Typer reads it, runs the same command body, and ends with the same output and exit code as the
full CLI; every line it is not sure of is left to the full CLI, untouched."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from weightvault.cli import app, transfer
from weightvault.cli.state import STATE

#: the entry point run in a child, then the heavy modules it loaded, on a last line of stderr
PROBE = (
    "import sys\n"
    "sys.argv = ['weightvault', *sys.argv[1:]]\n"
    "from weightvault.cli.entry import main\n"
    "try:\n"
    "    main()\n"
    "finally:\n"
    "    heavy = sorted(m for m in ('typer', 'click', 'weightvault.cli.app', 'yaml') if m in sys.modules)\n"
    "    sys.stderr.write('LOADED:' + ','.join(heavy) + '\\n')\n"
)


def _calls(monkeypatch: pytest.MonkeyPatch, argv: list[str], via_typer: bool) -> list[tuple[Any, ...]]:
    """What the command body and the vault state receive from ``argv`` (bodies replaced by a probe)."""
    seen: list[tuple[Any, ...]] = []

    def body(name: str) -> Any:
        def record(*args: Any, **kwargs: Any) -> int:
            state = (STATE.home, STATE.config, STATE.cache_dir, STATE.quiet)
            seen.append((name, args, kwargs, state))
            return 0

        return record

    monkeypatch.setattr(transfer, "push", body("push"))
    monkeypatch.setattr(transfer, "pull", body("pull"))
    monkeypatch.setattr(sys, "argv", ["weightvault", *argv])
    STATE.home = STATE.config = STATE.cache_dir = None
    STATE.quiet = False
    if via_typer:
        with pytest.raises(SystemExit) as ended:
            app.main()
        assert ended.value.code in (0, None)
    else:
        assert transfer.serve(argv)
    return seen


ACCEPTED = [
    ["push", "m", "src"],
    ["--home", "/h", "push", "org/m", "src", "-v", "v1", "-m", "a message = x", "--json"],
    ["-q", "--home=/h", "push", "m", "src", "--version=v2", "--message=hi", "--meta", "a=1", "--meta=b="],
    ["push", "--allow-empty", "m", "--no-default-ignores", "src", "--refuse-unsafe", "--base", "b@v1"],
    ["--config", "/c.yaml", "--cache-dir", "/cc", "push", "m", "src", "-q", "-v", "a", "-v", "b"],
    ["pull", "m@v1", "out"],
    ["--quiet", "pull", "m", "out", "--include", "*.json", "--include=x*", "--exclude", "y", "--force"],
    ["pull", "--link-mode", "hardlink", "m@prod", "out", "--provider", "aws", "--json", "-q"],
]


@pytest.mark.parametrize("argv", ACCEPTED, ids=lambda a: " ".join(a))
def test_an_accepted_line_reaches_the_body_as_typer_passes_it(
    monkeypatch: pytest.MonkeyPatch, argv: list[str]
) -> None:
    direct = _calls(monkeypatch, argv, via_typer=False)
    typer = _calls(monkeypatch, argv, via_typer=True)
    assert len(direct) == 1
    name, args, kwargs, state = direct[0]
    t_name, t_args, t_kwargs, t_state = typer[0]
    assert (name, args, state) == (t_name, t_args, t_state)
    # Typer passes an absent repeatable option as None (pull) or [] (push's --meta): same meaning
    assert {k: v or None for k, v in kwargs.items()} == {k: v or None for k, v in t_kwargs.items()}


@pytest.mark.parametrize(
    "argv",
    [
        ["push", "m"],  # one argument: the full CLI's usage error
        ["push", "m", "src", "extra"],
        ["push", "m", "src", "--help"],
        ["--help", "push", "m", "src"],
        ["--version", "push", "m", "src"],
        ["push", "m", "src", "-vx"],  # a short option with its value attached
        ["push", "m", "src", "-v=x"],
        ["push", "m", "src", "-m", "-dash-led message"],  # Click reads it as the value
        ["push", "m", "src", "--version"],  # no value
        ["push", "m", "src", "--version="],
        ["push", "m", "src", "--json=1"],
        ["push", "m", "src", "--", "x"],
        ["push", "m", ""],
        ["--home", "push", "m", "src"],
        ["--server", "http://x", "push", "m", "src"],
        ["push", "--home", "/h", "m", "src"],  # a global option after the command
        ["pull", "m", "out", "--with-base"],
        ["pull", "m", "out", "--base-dest", "b"],
        ["pull", "m", "out", "-f"],
        ["ls"],
        ["show", "m"],
        [],
    ],
    ids=lambda a: " ".join(a) or "(empty)",
)
def test_other_lines_are_left_to_the_full_cli(argv: list[str]) -> None:
    assert transfer.parse(argv) is None
    assert not transfer.serve(argv)


def test_a_server_in_the_environment_is_left_to_the_full_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEIGHTVAULT_SERVER", "http://127.0.0.1:9")
    assert transfer.parse(["push", "m", "src"]) is not None
    assert not transfer.serve(["push", "m", "src"])


def _same(text: str) -> str:
    """Output with what two runs cannot share blanked: durations, times, timestamp labels."""
    text = re.sub(r"in \d+\.\ds", "in Ts", text)
    text = re.sub(r'"seconds": [0-9.e-]+', '"seconds": T', text)
    text = re.sub(r"\d{4}-\d\d-\d\dT[0-9:.+]+(Z)?", "TIME", text)
    return re.sub(r"\b\d{14}\b", "LABEL", text)


def _run(*argv: str) -> tuple[int, str, str, list[str]]:
    got = subprocess.run(
        argv, capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "200"}
    )
    lines = got.stderr.splitlines(keepends=True)
    loaded = [x for x in lines if x.startswith("LOADED:")]
    heavy = [m for m in loaded[0].strip().removeprefix("LOADED:").split(",") if m] if loaded else []
    return got.returncode, got.stdout, "".join(x for x in lines if not x.startswith("LOADED:")), heavy


def test_push_and_pull_end_as_the_full_cli_does_without_typer(tmp_path: Path) -> None:
    """Each line through the entry point (which runs it here, without Typer) and through the full
    CLI, on twin homes: same exit code, same stdout and stderr."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("one")
    (src / "b.bin").write_bytes(b"\0" * 70_000)
    (src / "c.bin").write_bytes(os.urandom(9 << 20))  # large: hashed early on the entry's path
    lines: list[tuple[str, ...]] = [
        ("push", "org/m", "SRC", "-v", "v1", "-m", "first", "--meta", "k=v"),
        ("push", "org/m", "SRC"),  # unchanged: says so
        ("push", "org/m", "SRC", "--json"),
        ("push", "org/m", "SRC", "--meta", "novalue"),  # bad input: exit 4
        ("push", "org/m", "SRC/missing"),  # not found
        ("push", "org/m", "SRC", "-v", "v1"),  # the label exists
        ("push", "bad name!", "SRC"),
        ("pull", "org/m@v1", "DEST"),
        ("pull", "org/m@v1", "DEST", "--json"),
        ("pull", "org/m@v1", "DEST", "--include", "nothing*"),  # nothing selected: exit 3
        ("pull", "org/m@nope", "DEST"),
        ("pull", "nobody", "DEST"),
    ]
    for n, line in enumerate(lines):
        got = []
        for how in ("entry", "full"):
            home, dest = tmp_path / f"home-{how}", tmp_path / f"dest-{how}-{n}"
            args = [a.replace("SRC", str(src)).replace("DEST", str(dest)) for a in line]
            runner = ["-c", PROBE] if how == "entry" else ["-m", "weightvault.cli.app"]
            code, out, err, heavy = _run(sys.executable, *runner, "--home", str(home), *args)
            if how == "entry":
                # ran without Typer, Click or the Typer app; no config file, so no YAML parser either
                assert heavy == [], (line, heavy)
            out = out.replace(str(home), "HOME").replace(str(dest), "DEST")
            err = err.replace(str(home), "HOME").replace(str(dest), "DEST")
            got.append((code, _same(out), _same(err)))
        assert got[0] == got[1], line
    assert (tmp_path / "dest-entry-7" / "a.txt").read_text() == "one"


def test_the_collector_is_paused_for_start_up_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cyclic GC is off while the vault stack is imported and opened, and on again (with what
    start-up made frozen) before the push does its work: a long push or pull still collects."""
    import gc

    from weightvault.vault.vault import Vault

    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("x")
    seen: dict[str, Any] = {}
    real = Vault.push

    def push(self: Vault, *args: Any, **kwargs: Any) -> Any:
        seen["enabled"], seen["frozen"] = gc.isenabled(), gc.get_freeze_count()
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Vault, "push", push)
    try:
        assert transfer.serve(["--home", str(tmp_path / "home"), "push", "m", str(src), "-q"])
    finally:
        gc.unfreeze()
        gc.enable()
    assert seen["enabled"] is True
    assert seen["frozen"] > 0


def _early_threads() -> list[str]:
    import threading

    return [t.name for t in threading.enumerate() if t.name == "wv-early-hash"]


@pytest.mark.parametrize("ending", ["success", "error", "interrupt"])
def test_a_push_hashes_early_and_leaves_no_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ending: str
) -> None:
    """The push line starts the early hashes of its large files and hands them to the push;
    whatever the end (done, a failure, Ctrl-C), no thread of theirs is left running."""
    import gc

    from weightvault.vault import earlyhash
    from weightvault.vault.vault import Vault

    src = tmp_path / "src"
    src.mkdir()
    (src / "big.bin").write_bytes(os.urandom(earlyhash.LARGE + 1))
    given: list[Any] = []
    real = Vault.push

    def push(self: Vault, *args: Any, **kwargs: Any) -> Any:
        given.append(kwargs.get("early_hashes"))
        if ending == "interrupt":
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Vault, "push", push)
    model = "bad name!" if ending == "error" else "m"
    try:
        if ending == "success":
            assert transfer.serve(["--home", str(tmp_path / "home"), "push", model, str(src), "-q"])
        else:
            with pytest.raises(SystemExit) as ended:
                transfer.serve(["--home", str(tmp_path / "home"), "push", model, str(src), "-q"])
            assert ended.value.code == (130 if ending == "interrupt" else 4)
    finally:
        gc.unfreeze()
        gc.enable()
    assert len(given) == 1 and isinstance(given[0], earlyhash.EarlyHashes)
    assert _early_threads() == []
    assert transfer._early is None
