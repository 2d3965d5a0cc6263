"""recover never makes things worse: built aside, swapped in complete, names what it skipped."""

from __future__ import annotations

from pathlib import Path

import pytest

from weightvault.core import layout
from weightvault.vault.vault import Vault

from ..conftest import run_cli, write_random


def _push_three(v: Vault, tmp_path: Path) -> None:
    for i in range(3):
        v.push("m", write_random(tmp_path / f"s{i}" / "w.bin", 50_000, seed=i).parent, version=f"v{i}")


def test_recover_names_what_it_skipped_and_recovers_the_rest(vault: Vault, tmp_path: Path) -> None:
    _push_three(vault, tmp_path)
    vault.primary.put(layout.version_ref_key("m", "broken"), b"{not json")
    commit = vault.resolve("m@v1").commit
    vault.primary.delete(layout.manifest_key(commit))
    report = vault.recover()
    assert not report.ok
    assert report["versions"] == 2 and report["skipped"] == 2
    assert any(layout.version_ref_key("m", "broken") in p for p in report.problems)
    assert any(layout.version_ref_key("m", "v1") in p and "not found" in p for p in report.problems)
    assert [v.label for v in vault.list_versions("m")] == ["v2", "v0"]


def test_recover_cli_exits_non_zero_when_something_was_skipped(home: Path, tmp_path: Path) -> None:
    with Vault.open(home) as v:
        _push_three(v, tmp_path)
        v.primary.put(layout.alias_ref_key("m", "prod"), b'{"model": "m"}')
    r = run_cli(home, "recover")
    assert r.returncode == 6, r.stderr
    assert layout.alias_ref_key("m", "prod") in r.stderr and "3 versions" in r.stderr


def test_a_recover_that_fails_half_way_leaves_the_old_index(
    vault: Vault, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _push_three(vault, tmp_path)
    calls = {"n": 0}
    real = vault.store.read_manifest

    def flaky(commit: str):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # the user gave up half-way
        return real(commit)

    monkeypatch.setattr(vault.store, "read_manifest", flaky)
    with pytest.raises(KeyboardInterrupt):
        vault.recover()
    monkeypatch.undo()
    assert [v.label for v in vault.list_versions("m")] == ["v2", "v1", "v0"]
    assert not list(vault.settings.home.glob("recover-*"))
