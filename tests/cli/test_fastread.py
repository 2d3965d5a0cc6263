"""The read-only fast path of ``ls`` and ``show`` (``cli/fastread.py``): the same bytes as the full
CLI on many shapes of vault, a refresh from the shared store before it answers, and a fall back
to the full path whenever it cannot be sure."""

from __future__ import annotations

import json
import pickle
import shutil
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from weightvault.cli import views
from weightvault.registry.index import RegistryIndex
from weightvault.registry.migrations import HEAD
from weightvault.vault import fastopen, refresh, store
from weightvault.vault.vault import Vault

from ..conftest import write_random
from .conftest import DECLINED, entry, full, serve_alone, serve_script
from .test_plaintable import rich_text

HEAVY = ("typer", "click", "sqlalchemy", "pydantic", "yaml", "rich", "weightvault.vault.vault",
         "weightvault.registry.index")  # fmt: skip
#: serve() alone: exit 0 when the fast path answered, DECLINED (and no output) when it declined
SERVE = serve_script("weightvault.cli.fastread", HEAVY)


def fast(home: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str, list[str]]:
    """(exit code, stdout, stderr without the probe line, heavy modules loaded) of serve() alone."""
    return serve_alone(SERVE, home, *args, env=env)


def assert_same(home: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """The fast path answers, loads none of the heavy stack, and prints exactly what the full CLI
    prints (stdout and stderr, byte for byte, same exit code); so does the entry point."""
    code, out, err, heavy = fast(home, *args, env=env)
    assert code == 0, f"fast path declined {args}: {err}"
    allowed = ({"rich"} if "--json" not in args else set()) | (
        {"yaml"} if (home / "config.yaml").exists() else set()
    )
    assert set(heavy) <= allowed, heavy
    ref = full(home, *args, env=env)
    assert ref.returncode == 0, ref.stderr
    assert (out, err) == (ref.stdout, ref.stderr)
    via_entry = entry(home, *args, env=env)
    assert (via_entry.returncode, via_entry.stdout, via_entry.stderr) == (0, ref.stdout, ref.stderr)
    return out


def settle(home: Path) -> None:
    """Let the home's index apply the journal entries its own writes appended (any read does)."""
    with Vault.open(home) as v:
        v.refresh()


def build_vault(home: Path, tmp: Path) -> None:
    """Namespaces, aliases, metadata and messages with brackets and non-ASCII text, many versions,
    lineage, pickle findings, an empty-then-refilled model."""
    src = tmp / "src"
    write_random(src / "model.safetensors", 20_000, seed=1)
    (src / "config.json").write_text('{"a": 1}')
    write_random(src / "deep" / "er" / "weights.bin", 3_000, seed=2)
    (src / "state.pkl").write_bytes(pickle.dumps({"step": 3, "lr": [0.1, 0.2]}))
    with Vault.open(home) as v:
        v.push("org/base", src, version="v1", message="first [bold]one[/bold]", metadata={"team": "nlp [x]"})
        for i in range(12):
            (src / "config.json").write_text(f'{{"a": {i}}}')
            v.push("org/base", src, message=f"step {i} — ünïcode" if i % 2 else "", version=f"r{i:03d}")
        v.set_alias("org/base", "production", "v1")
        v.set_alias("org/base", "staging", "r010")
        v.set_alias("org/base", "b-alias", "r010")
        v.set_alias("org/base", "a-alias", "r011")
        write_random(tmp / "lora" / "adapter.safetensors", 5_000, seed=3)
        v.push("zeta", tmp / "lora", version="1.0", base="org/base@v1")
        v.push("alpha", src, version="20261123142501")
        v.set_alias("alpha", "prod", "20261123142501")
    settle(home)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fastread")
    build_vault(root / "home", root)
    return root / "home"


@pytest.fixture
def filled(built: Path, tmp_path: Path) -> Path:
    """A copy of the built vault (store, index, cache) that a test may change."""
    return Path(shutil.copytree(built, tmp_path / "home", symlinks=True))


def test_ls_and_show_print_the_same_bytes_as_the_full_cli(filled: Path) -> None:
    listing = assert_same(filled, "ls")
    assert "org/base" in listing and "production→v1" in listing
    assert_same(filled, "ls", "--json")
    assert_same(filled, "-q", "ls", "--json")
    for model in ("org/base", "zeta", "alpha"):
        assert_same(filled, "ls", model)
        assert_same(filled, "ls", "--json", model)
    for ref in (
        "org/base",
        "org/base@latest",
        "org/base@v1",
        "org/base@production",
        "org/base@staging",
        "zeta@1.0",
        "alpha@prod",
        "alpha@20261123142501",  # a label that is all digits (hex-like) is still a label
    ):
        shown = assert_same(filled, "show", ref)
        assert "replicas: local complete" in shown
        assert_same(filled, "show", ref, "--json")
    out = assert_same(filled, "show", "org/base@v1")
    assert "pickle safe state.pkl" in out and "message: first [bold]one[/bold]" in out


def test_a_long_listing_is_the_same_bytes_as_the_sdk_model(filled: Path) -> None:
    """Hundreds more versions in the index (added as a refresh adds another machine's), half of
    them made on a whole second (an ISO time without a fraction), some with metadata: the fast
    ``ls MODEL --json`` (row by row, no object per version) prints what the full CLI prints, and
    that is the standard library's encoding of the SDK's ``Vault.model``."""
    with Vault.open(filled) as v:
        latest = v.show("org/base")
    index = RegistryIndex(f"sqlite:///{filled / 'index.db'}")
    body = index.get_manifest(latest.commit)
    base = datetime(2026, 11, 30, tzinfo=UTC)
    index.add_versions(
        [
            {
                "model": "org/base",
                "label": f"bulk{i:04d}",
                "commit": latest.commit,
                "parent": latest.commit,
                "created": base + timedelta(seconds=i, microseconds=0 if i % 2 else 7 * i),
                "message": f"bulk {i} [x] ü",
                "metadata": {} if i % 3 else {"i": str(i), "z": "ä"},
                "total_size": latest.total_size,
                "file_count": latest.file_count,
                "manifest": body,
            }
            for i in range(300)
        ]
    )
    index.engine.dispose()
    out = assert_same(filled, "ls", "org/base", "--json")
    assert out.count('"label": "bulk') == 300 and '"created": "2026-11-30T00:00:01+00:00"' in out
    with Vault.open(filled) as v:
        assert out == json.dumps(v.model("org/base").to_json(), indent=2, default=str) + "\n"


def test_a_plain_table_is_drawn_without_rich_as_rich_draws_it(filled: Path) -> None:
    """``ls MODEL`` into a pipe: when every cell is plain, the table is written without Rich
    (not even imported), and it is the text Rich draws for the same rows."""
    for model in ("alpha", "zeta"):
        out = assert_same(filled, "ls", model)
        _code, _out, _err, heavy = fast(filled, "ls", model)
        assert "rich" not in heavy
        with Vault.open(filled) as v:
            rows = [views.version_row(x) for x in v.model(model).versions]
        assert out == rich_text(model, views.VERSION_COLUMNS, rows)


def test_a_unique_commit_prefix_is_served_and_an_ambiguous_one_is_left_to_the_full_cli(
    filled: Path, tmp_path: Path
) -> None:
    with Vault.open(filled) as v:
        commits = [x.commit for x in v.list_versions("org/base")]
    assert_same(filled, "show", f"org/base@{commits[3][:12]}")
    assert_same(filled, "show", f"org/base@{commits[3]}", "--json")
    # a label that is also a prefix of another version's commit: git's rule makes it ambiguous
    prefix = commits[3][:8]
    write_random(tmp_path / "other" / "x.bin", 1_000, seed=9)
    with Vault.open(filled) as v:
        v.push("org/base", tmp_path / "other", version=prefix)
    settle(filled)
    code, out, err, _ = fast(filled, "show", f"org/base@{prefix}")
    assert (code, out, err) == (DECLINED, "", "")
    got = entry(filled, "show", f"org/base@{prefix}")
    assert got.returncode == 4 and "ambiguous" in got.stderr


def test_a_model_whose_versions_were_all_deleted_lists_the_same(filled: Path) -> None:
    with Vault.open(filled) as v:
        v.delete("alpha@20261123142501")
    settle(filled)
    assert "alpha" not in assert_same(filled, "ls")
    assert fast(filled, "ls", "alpha", "--json")[:2] == (DECLINED, "")  # not found: the full CLI says so
    got = entry(filled, "ls", "alpha", "--json")
    assert got.returncode == 3 and got.stderr == "error: model 'alpha' not found\n"


def test_an_empty_vault_says_so_the_same_way(tmp_path: Path) -> None:
    home = tmp_path / "empty"
    Vault.open(home).close()
    settle(home)
    assert_same(home, "ls")
    assert_same(home, "ls", "--json")


@pytest.mark.parametrize(
    "args",
    [
        ("ls", "nope"),
        ("ls", "nope", "--json"),
        ("ls", "Bad Name!"),
        ("show", "nope@v1"),
        ("show", "org/base@nope"),
        ("show", "org/base@"),
        ("show", "org/base@abcd"),
    ],
)
def test_errors_are_left_to_the_full_cli_with_its_message_and_exit_code(
    filled: Path, args: tuple[str, ...]
) -> None:
    code, out, err, _ = fast(filled, *args)
    assert (code, out, err) == (DECLINED, "", "")
    ref = full(filled, *args)
    assert ref.returncode in (3, 4) and ref.stderr.startswith("error: ")
    got = entry(filled, *args)
    assert (got.returncode, got.stdout, got.stderr) == (ref.returncode, ref.stdout, ref.stderr)


def _shared_home(home: Path, store_dir: Path) -> Path:
    home.mkdir(parents=True)
    (home / "config.yaml").write_text(f"store_url: {store_dir.as_uri()}\ncache_max_size_gb: 1\nworkers: 2\n")
    return home


def test_a_push_from_another_machine_is_shown_first_time(tmp_path: Path) -> None:
    """Two homes on one store: B's index is current, A pushes; B's next ``ls`` must show it. The
    fast path sees the new journal entry and declines; the full path applies it; after that the
    fast path answers again, with the new version."""
    shared = tmp_path / "store"
    a = _shared_home(tmp_path / "a", shared)
    b = _shared_home(tmp_path / "b", shared)
    write_random(tmp_path / "m" / "w.bin", 4_000, seed=5)
    with Vault.open(a) as va:
        va.push("m", tmp_path / "m", version="v1")
    settle(b)
    assert '"v1"' in assert_same(b, "ls", "m", "--json")

    write_random(tmp_path / "m" / "w.bin", 4_000, seed=6)
    with Vault.open(a) as va:
        va.push("m", tmp_path / "m", version="v2")
        va.set_alias("m", "prod", "v2")
    code, out, _err, _ = fast(b, "ls", "m", "--json")
    assert (code, out) == (DECLINED, "")  # B's index is behind the store: not answered from it
    shown = entry(b, "ls", "m")  # through the entry point: the full path refreshes and answers
    assert shown.returncode == 0 and "v2" in shown.stdout and "prod" in shown.stdout
    listed = assert_same(b, "ls", "m", "--json")  # now current: the fast path answers
    assert '"v2"' in listed and '"prod"' in listed

    with Vault.open(a) as va:
        va.delete("m@v1")
    code, out, _err, _ = fast(b, "show", "m@v1")
    assert (code, out) == (DECLINED, "")
    gone = entry(b, "show", "m@v1")
    assert gone.returncode == 3 and "not found" in gone.stderr


def _write_config(home: Path, text: str) -> None:
    (home / "config.yaml").write_text(text)


@pytest.mark.parametrize(
    "config",
    [
        "database_url: sqlite:////tmp/elsewhere.db\n",
        "store_url: s3://bucket/prefix\n",
        "replicas: {backup: file:///tmp/replica}\n",
        "encryption: {enabled: true}\n",
        "access_control_enabled: true\n",
        "workers: 0\n",  # pydantic refuses it: the full path must say so
        "workers: '2'\n",  # a string pydantic might coerce: not for the fast path to judge
        "cache_enabled: maybe\n",
        "nonsense_key: 1\n",
        "- a list\n",
        "store_url: [unclosed\n",
    ],
)
def test_settings_it_does_not_fully_understand_take_the_full_path(filled: Path, config: str) -> None:
    _write_config(filled, config)
    code, out, err, _ = fast(filled, "ls", "--json")
    assert (code, out, err) == (DECLINED, "", "")


def test_harmless_settings_keep_the_fast_path(filled: Path) -> None:
    _write_config(
        filled,
        "cache_max_size_gb: 2.5\nworkers: 4\ncompression: zstd\nlink_mode: hardlink\n"
        f"cache_directory: {filled / 'c2'}\ngc_grace_seconds: 60\n",
    )
    assert_same(filled, "ls", "--json")
    assert_same(filled, "show", "org/base@v1")


@pytest.mark.parametrize(
    "env",
    [
        {"WEIGHTVAULT_SERVER": "http://127.0.0.1:9"},
        {"WEIGHTVAULT_DATABASE_URL": "sqlite:////tmp/elsewhere.db"},
        {"WEIGHTVAULT_CONFIG": "/nonexistent.yaml"},
        {"WEIGHTVAULT_STORE_URL": "s3://bucket/x"},
        {"WEIGHTVAULT_BOGUS": "1"},
    ],
)
def test_environment_it_does_not_know_takes_the_full_path(filled: Path, env: dict[str, str]) -> None:
    code, out, err, _ = fast(filled, "ls", env=env)
    assert (code, out, err) == (DECLINED, "", "")


@pytest.mark.parametrize(
    "args",
    [
        ("--server", "http://127.0.0.1:9", "ls"),
        ("--config", "/x.yaml", "ls"),
        ("--cache-dir", "/tmp/c", "ls"),
        ("ls", "--help"),
        ("ls", "a", "b"),
        ("show",),
        ("pull", "org/base", "/tmp/x"),
        ("ls", "--json", "--json"),
    ],
)
def test_command_lines_it_does_not_serve_take_the_full_path(filled: Path, args: tuple[str, ...]) -> None:
    code, out, err, _ = fast(filled, *args)
    assert (code, out, err) == (DECLINED, "", "")


def test_an_index_of_another_schema_or_store_takes_the_full_path(filled: Path, tmp_path: Path) -> None:
    db = sqlite3.connect(filled / "index.db")
    db.execute("UPDATE alembic_version SET version_num = '0003'")
    db.commit()
    assert fast(filled, "ls")[0] == DECLINED
    db.execute("UPDATE alembic_version SET version_num = ?", (HEAD,))
    db.execute("UPDATE store_state SET value = 'another' WHERE name = 'store_id'")
    db.commit()
    assert fast(filled, "ls")[0] == DECLINED
    db.execute("DELETE FROM store_state")
    db.commit()
    db.close()
    assert fast(filled, "ls")[0] == DECLINED
    # the full path reconciles the index with the store (a full scan), after which the fast path answers
    assert full(filled, "ls").returncode == 0
    assert_same(filled, "ls", "org/base")


def test_a_manifest_missing_from_the_index_takes_the_full_path(filled: Path) -> None:
    db = sqlite3.connect(filled / "index.db")
    db.execute("DELETE FROM manifests")
    db.commit()
    db.close()
    code, out, _err, _ = fast(filled, "show", "org/base@v1")
    assert (code, out) == (DECLINED, "")
    assert_same(filled, "ls", "org/base")  # a listing needs no manifest


def test_the_fast_path_never_writes_the_index(filled: Path) -> None:
    """The database is left byte for byte as it was, and nothing waits in its write-ahead log
    (SQLite's shared-memory file of a WAL reader may appear: it holds no data)."""
    before = (filled / "index.db").read_bytes()
    for args in (("ls",), ("ls", "org/base", "--json"), ("show", "org/base@v1")):
        assert fast(filled, *args)[0] == 0
    assert (filled / "index.db").read_bytes() == before
    wal = filled / "index.db-wal"
    assert not wal.exists() or wal.stat().st_size == 0


def test_constants_mirror_the_modules_they_stand_in_for() -> None:
    assert fastopen.STORE_FORMAT == store.STORE_FORMAT
    assert (fastopen.CURSOR, fastopen.STORE_ID) == (refresh.CURSOR, refresh.STORE_ID)
