"""The light path of ``push`` (``cli/fastpush.py``, ``vault/lightpush.py``, ``registry/lightindex.py``):
without pydantic, SQLAlchemy or Typer it leaves the same store objects, index rows, stat cache
and output as the full CLI, into a new home and into one that already holds versions; and it
declines, with nothing written and nothing printed, in every case it does not handle."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import struct
from pathlib import Path
from typing import Any

import pytest

from weightvault.cas.pack import decode_table
from weightvault.core import layout
from weightvault.registry.index import RegistryIndex
from weightvault.registry.lightindex import LightIndex
from weightvault.vault import config, lightpush
from weightvault.vault.vault import Vault

from ..conftest import write_random
from .conftest import DECLINED, entry, full, serve_alone, serve_script

HEAVY = (
    "typer",
    "click",
    "sqlalchemy",
    "pydantic",
    "pydantic_settings",
    "rich",
    "weightvault.vault.vault",
    "weightvault.vault.state",
    "weightvault.registry.index",
)
SERVE = serve_script("weightvault.cli.fastpush", HEAVY)


def fast(home: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str, list[str]]:
    return serve_alone(SERVE, home, *args, env=env)


def timeless(text: str) -> str:
    """The output with what two pushes cannot share blanked: the duration and the creation time."""
    text = re.sub(r" in \d+\.\ds$", " in Ts", text, flags=re.M)
    text = re.sub(r'"seconds": [0-9.e-]+', '"seconds": T', text)
    return re.sub(r'"created": "[^"]+"', '"created": T', text)


def bf16_safetensors(path: Path, n: int, seed: int) -> None:
    """A safetensors file of one BF16 tensor of ``n`` values that look like weights."""
    import random

    rng = random.Random(seed)
    header = json.dumps({"w": {"dtype": "BF16", "shape": [n], "data_offsets": [0, 2 * n]}}).encode()
    header += b" " * (-len(header) % 8)
    body = b"".join(struct.pack("<f", rng.gauss(0, 0.02))[2:] for _ in range(n))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(header)) + header + body)


@pytest.fixture
def src(tmp_path: Path) -> Path:
    """A model folder: a large file (hashed on its own, and early), weights, small files."""
    root = tmp_path / "src"
    write_random(root / "model-00001-of-00002.safetensors", 9_500_000, seed=1)
    bf16_safetensors(root / "model-00002-of-00002.safetensors", 300_000, seed=2)
    (root / "config.json").write_text('{"hidden_size": 64}')
    write_random(root / "tok" / "vocab.bin", 40_000, seed=3)
    (root / "empty.txt").write_bytes(b"")
    return root


# ---- what the two paths leave ------------------------------------------------------------------


def _rows(db: sqlite3.Connection, query: str) -> list[tuple[Any, ...]]:
    return sorted(db.execute(query).fetchall(), key=repr)


def index_rows(home: Path) -> dict[str, Any]:
    """Every table of the index, each column kept unless it is random or a time by design:
    ``created_at`` (models, versions, manifests, recipes, packs: the moment of the push), pack
    ids (``uuid4``: a pack is named, not hashed) and chunk offsets (the order in which the two
    chunking threads append to a pack); every chunk's stored bytes are compared instead
    (``stored_chunks``). ``store_id`` is the store's random id: checked to be the store's own."""
    db = sqlite3.connect(home / "index.db")
    try:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        out: dict[str, Any] = {"tables": sorted(tables)}
        out["models"] = _rows(db, "SELECT id, name FROM models")
        out["versions"] = _rows(
            db,
            "SELECT id, model_id, label, commit_id, parent, message, metadata_json, total_size, "
            "file_count FROM versions",
        )
        out["same_created"] = _rows(
            db,
            "SELECT v.label, v.created_at = m.created_at, v.created_at = c.created_at FROM versions v "
            "JOIN models m ON m.id = v.model_id JOIN manifests c ON c.commit_id = v.commit_id",
        )
        out["manifests"] = _rows(db, "SELECT commit_id, body FROM manifests")
        out["recipes"] = _rows(db, "SELECT name, size, body FROM recipes")
        out["packs"] = _rows(db, "SELECT size, condemned_at FROM packs")
        out["chunks"] = _rows(db, "SELECT id, stored_len, raw_len, codec, key_slot FROM chunks")
        state = dict(db.execute("SELECT name, value FROM store_state").fetchall())
        store_id = json.loads((home / "store" / layout.CONFIG_KEY).read_bytes())["id"]
        assert state.pop("store_id") == store_id
        out["state"] = state
        out["alembic"] = db.execute("SELECT version_num FROM alembic_version").fetchall()
        for table in tables:
            if table not in out and table not in ("aliases", "store_state", "alembic_version"):
                out[table] = _rows(db, f"SELECT * FROM {table}")  # the server's tables: empty
        out["aliases"] = _rows(db, "SELECT * FROM aliases")
        out["times_are_text"] = _rows(
            db, "SELECT DISTINCT typeof(created_at), length(created_at) FROM versions"
        )
        out["journal_mode"] = db.execute("PRAGMA journal_mode").fetchall()
        return out
    finally:
        db.close()


def stored_chunks(home: Path) -> dict[bytes, bytes]:
    """Every indexed chunk's bytes as stored in its pack."""
    db = sqlite3.connect(home / "index.db")
    try:
        rows = db.execute('SELECT id, pack_id, "offset", stored_len FROM chunks').fetchall()
    finally:
        db.close()
    out: dict[bytes, bytes] = {}
    for cid, pack, offset, n in rows:
        with open(home / "store" / layout.pack_key(pack), "rb") as f:
            f.seek(offset)
            out[cid] = f.read(n)
    return out


def store_objects(home: Path) -> dict[str, Any]:
    """The store's objects: content-addressed ones by name and bytes; the others with what is
    random or a time by design left out (the config's id and time; a ref's and a journal
    entry's time; pack names, which are random: a pack's table is compared as a set of
    entries without offsets, a pack's bytes through ``stored_chunks``)."""
    root = home / "store"
    out: dict[str, Any] = {}
    packs: dict[str, Any] = {}
    for p in sorted(root.rglob("*")):
        key = p.relative_to(root).as_posix()
        if p.is_dir():
            if not key.startswith(("packs/", "index/")):
                out[key + "/"] = "dir"
            continue
        if key == layout.CONFIG_KEY:
            cfg = json.loads(p.read_bytes())
            out[key] = {k: v for k, v in cfg.items() if k not in ("id", "created")}
        elif key.startswith("refs/"):
            body = json.loads(p.read_bytes())
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+\+00:00", body.pop("created"))
            out[key] = body
        elif key.startswith("journal/"):
            entry = json.loads(p.read_bytes())
            entry.pop("time")
            if entry["kind"] == "pack":
                assert (root / layout.pack_key(entry.pop("id"))).is_file()
            out[key] = entry
        elif key.startswith("packs/"):
            packs.setdefault("sizes", []).append(p.stat().st_size)
        elif key.startswith("index/"):
            table = decode_table(p.read_bytes())
            assert (root / layout.pack_key(p.name)).is_file()
            packs.setdefault("tables", []).append(
                sorted((e.chunk_id, e.stored_len, e.raw_len, e.codec, e.key_slot) for e in table)
            )
        elif key.startswith(".tmp/") or key.startswith("locks/"):
            out[key] = "left behind"
        else:
            out[key] = p.read_bytes()
    out["packs"] = {k: sorted(v, key=repr) for k, v in packs.items()}
    return out


def stat_cache(home: Path) -> list[tuple[Any, ...]]:
    """The stat cache's rows without ``seen_ns`` (when the push began: a time); the scheme names
    the store's random id, replaced here."""
    store_id = json.loads((home / "store" / layout.CONFIG_KEY).read_bytes())["id"]
    db = sqlite3.connect(home / "statcache.db")
    try:
        rows = db.execute(
            "SELECT path, scheme, dev, ino, size, mtime_ns, ctime_ns, recipe, safety FROM files ORDER BY path"
        ).fetchall()
    finally:
        db.close()
    return [tuple(str(x).replace(store_id, "ID") if isinstance(x, str) else x for x in r) for r in rows]


def home_entries(home: Path) -> list[str]:
    """The home's paths outside the store, and the store's top level."""
    return sorted(
        p.relative_to(home).as_posix()
        for p in home.rglob("*")
        if not p.relative_to(home).as_posix().startswith("store/") and not p.name.endswith(("-wal", "-shm"))
    )


def assert_same_homes(a: Path, b: Path) -> None:
    assert index_rows(a) == index_rows(b)
    assert stored_chunks(a) == stored_chunks(b)
    assert store_objects(a) == store_objects(b)
    assert stat_cache(a) == stat_cache(b)
    assert home_entries(a) == home_entries(b)


def push_both(
    tmp_path: Path,
    src: Path,
    *args: str,
    homes: tuple[Path, Path] | None = None,
    envs: tuple[dict[str, str], dict[str, str]] = ({}, {}),
) -> tuple[Path, Path]:
    """``push`` by the full CLI into one home and by the light path into another (``envs``: the
    environment of each): the same exit code and output (timeless); returns (full home, light
    home)."""
    a, b = homes or (tmp_path / "full-home", tmp_path / "light-home")
    want = full(a, "push", *args, env=envs[0])
    assert want.returncode == 0, want.stderr
    code, out, err, heavy = fast(b, "push", *args, env=envs[1])
    assert code == 0, f"the light path declined: {err}"
    allowed = {"rich"} if not {"-q", "--quiet", "--json"} & set(args) else set()
    assert set(heavy) <= allowed, heavy
    assert timeless(out) == timeless(want.stdout)
    if allowed:  # the progress bar goes to stderr; the summary line is the same
        assert timeless(err.splitlines()[-1]) == timeless(want.stderr.splitlines()[-1])
    else:
        assert timeless(err) == timeless(want.stderr)
    return a, b


# ---- the tests ---------------------------------------------------------------------------------


def test_the_schema_text_creates_the_index_bootstrap_creates(tmp_path: Path) -> None:
    RegistryIndex.sqlite(tmp_path / "a.db").close()
    LightIndex(tmp_path / "b.db", create=True).close()

    def schema(path: Path) -> tuple[Any, ...]:
        db = sqlite3.connect(path)
        try:
            return (
                sorted(
                    db.execute("SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall(), key=repr
                ),
                db.execute("SELECT * FROM alembic_version").fetchall(),
                db.execute("PRAGMA journal_mode").fetchall(),
            )
        finally:
            db.close()

    assert schema(tmp_path / "a.db") == schema(tmp_path / "b.db")
    # and the full stack opens the light one as current (no migration: the same stamp)
    idx = RegistryIndex.sqlite(tmp_path / "b.db")
    try:
        assert idx.schema_revision() == schema(tmp_path / "a.db")[1][0][0]
    finally:
        idx.close()


def test_defaults_are_the_settings_defaults() -> None:
    fields = config.Settings.model_fields
    for key, value in lightpush.DEFAULTS.items():
        assert fields[key].default == value, key


def test_a_push_into_a_new_home_equals_the_full_path(tmp_path: Path, src: Path) -> None:
    a, b = push_both(tmp_path, src, "org/m", str(src), "--version", "v1", "-q")
    assert_same_homes(a, b)


@pytest.mark.parametrize("args", [("--json",), (), ("-m", "first one", "--quiet")])
def test_output_and_rows_equal_the_full_path_in_every_form(
    tmp_path: Path, src: Path, args: tuple[str, ...]
) -> None:
    a, b = push_both(tmp_path, src, "m", str(src), "-v", "v1", *args)
    assert_same_homes(a, b)


def test_an_unlabelled_first_push_gets_a_timestamp_label(tmp_path: Path, src: Path) -> None:
    a, b = push_both(tmp_path, src, "m", str(src), "-q")
    with Vault.open(b) as v:
        (label,) = [x.label for x in v.list_versions("m")]
    assert re.fullmatch(r"\d{14}", label)
    # the labels (times) differ; everything else is the same
    for home in (a, b):
        for p in (home / "store" / "refs").rglob("*"):
            if p.is_file():
                p.rename(p.with_name("L"))
        db = sqlite3.connect(home / "index.db")
        db.execute("UPDATE versions SET label = 'L'")
        db.commit()
        db.close()
    assert index_rows(a) == index_rows(b)


def test_a_second_push_deduplicates_as_the_full_path(tmp_path: Path, src: Path) -> None:
    a, b = push_both(tmp_path, src, "m", str(src), "--version", "v1", "-q")
    (src / "config.json").write_text('{"hidden_size": 128}')
    write_random(src / "extra.bin", 2_000_000, seed=9)
    a, b = push_both(tmp_path, src, "m", str(src), "--version", "v2", "--json", homes=(a, b))
    assert_same_homes(a, b)
    # and a push of another model into the same home
    push_both(tmp_path, src, "other", str(src), "--version", "v1", "-q", homes=(a, b))
    assert_same_homes(a, b)


@pytest.mark.parametrize("compression", ["zstd", "float"])
def test_compression_settings_are_served(tmp_path: Path, src: Path, compression: str) -> None:
    homes = (tmp_path / "full-home", tmp_path / "light-home")
    for home in homes:
        home.mkdir()
        (home / "config.yaml").write_text(f"compression: {compression}\n")
    a, b = push_both(tmp_path, src, "m", str(src), "--version", "v1", "-q", homes=homes)
    assert_same_homes(a, b)
    codecs = {r[3] for r in index_rows(b)["chunks"]}
    assert codecs != {0}, "nothing was compressed"


@pytest.mark.parametrize("how", ["option", "environment"])
def test_a_config_file_and_a_cache_folder_elsewhere_are_served(tmp_path: Path, src: Path, how: str) -> None:
    """The benchmark's float push: ``--config FILE`` (or ``WEIGHTVAULT_CONFIG``), the cache in
    another folder (``--cache-dir`` or ``WEIGHTVAULT_CACHE_DIRECTORY``), made where the full path
    makes it."""
    cfg = tmp_path / "float.yaml"
    cfg.write_text("compression: float\n")
    caches = (tmp_path / "cache-full", tmp_path / "cache-light")
    a, b = tmp_path / "full-home", tmp_path / "light-home"
    if how == "option":
        want = full(a, "--config", str(cfg), "--cache-dir", str(caches[0]), "push", "m", str(src), "-v", "v1")
        assert want.returncode == 0, want.stderr
        line = ("--config", str(cfg), "--cache-dir", str(caches[1]), "push", "m", str(src), "-v", "v1")
        code, _out, err, heavy = fast(b, *line)
        assert (code, set(heavy) - {"rich"}) == (0, set()), err
    else:
        envs = (
            {"WEIGHTVAULT_CONFIG": str(cfg), "WEIGHTVAULT_CACHE_DIRECTORY": str(caches[0])},
            {"WEIGHTVAULT_CONFIG": str(cfg), "WEIGHTVAULT_CACHE_DIRECTORY": str(caches[1])},
        )
        push_both(tmp_path, src, "m", str(src), "-v", "v1", "-q", envs=envs)
    assert_same_homes(a, b)
    assert sorted(p.relative_to(caches[0]) for p in caches[0].rglob("*")) == sorted(
        p.relative_to(caches[1]) for p in caches[1].rglob("*")
    )
    assert caches[1].is_dir() and not (b / "cache").exists()
    assert {r[3] for r in index_rows(b)["chunks"]} != {0}  # the config file's compression was used


def test_pull_and_verify_after_a_light_push(tmp_path: Path, src: Path) -> None:
    home = tmp_path / "home"
    code, _out, err, _heavy = fast(home, "push", "m", str(src), "--version", "v1", "-q")
    assert code == 0, err
    got = full(home, "pull", "m@v1", str(tmp_path / "out"), "-q")
    assert got.returncode == 0, got.stderr
    for p in src.rglob("*"):
        if p.is_file():
            assert (tmp_path / "out" / p.relative_to(src)).read_bytes() == p.read_bytes()
    check = full(home, "verify", "m@v1")
    assert check.returncode == 0, check.stderr
    # the index followed its own journal entries: the next read takes the light path too
    with Vault.open(home) as v:
        assert v.refresh().applied == 0


def test_the_entry_point_takes_the_light_path(tmp_path: Path, src: Path) -> None:
    got = entry(
        tmp_path / "home",
        "push",
        "m",
        str(src),
        "--version",
        "v1",
        "-q",
        env={"PYTHONPROFILEIMPORTTIME": "1"},
    )
    assert got.returncode == 0, got.stderr
    imported = {
        line.split("|")[-1].strip() for line in got.stderr.splitlines() if line.startswith("import time:")
    }
    assert "weightvault.vault.lightpush" in imported
    assert not {"sqlalchemy", "pydantic", "typer"} & imported


# ---- declines ----------------------------------------------------------------------------------


def snapshot(root: Path) -> dict[str, tuple[int, bytes | None]]:
    """Every path, its mtime and bytes; not SQLite's ``-wal``/``-shm`` files, which a reader of
    a database (the stat cache, read by the early hashes as on the full path) may fold back and
    remove when it closes it."""
    if not root.exists():
        return {}
    return {
        p.relative_to(root).as_posix(): (p.stat().st_mtime_ns, p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
        if not p.name.endswith(("-wal", "-shm"))
    }


def assert_declined(home: Path, *args: str, env: dict[str, str] | None = None) -> None:
    before = snapshot(home)
    code, out, err, _heavy = fast(home, *args, env=env)
    assert (code, out, err) == (DECLINED, "", "")
    assert snapshot(home) == before


@pytest.fixture
def used(tmp_path: Path, src: Path) -> Path:
    """A home with ``m@v1`` (pushed by the full path) and its index current."""
    home = tmp_path / "used"
    assert full(home, "push", "m", str(src), "--version", "v1", "-q").returncode == 0
    return home


@pytest.mark.parametrize(
    "extra",
    [
        ("--meta", "k=v"),
        ("--base", "x@v1"),
        ("--allow-empty",),
        ("--no-default-ignores",),
        ("--refuse-unsafe",),
        ("--help",),
        ("--version",),
    ],
)
def test_options_it_does_not_handle_decline(used: Path, src: Path, extra: tuple[str, ...]) -> None:
    assert_declined(used, "push", "m", str(src), "--version", "v9", *extra)


def test_what_it_does_not_handle_declines(used: Path, src: Path, tmp_path: Path) -> None:
    assert_declined(used, "push", "m", str(src), "--version", "v1")  # exists
    assert_declined(used, "push", "m", str(src))  # compared with the latest by the full path
    assert_declined(used, "push", "bad name!", str(src), "-v", "v2")
    assert_declined(used, "push", "m", str(src), "-v", "bad/label")
    assert_declined(used, "push", "m", str(tmp_path / "missing"), "-v", "v2")
    (tmp_path / "empty").mkdir()
    assert_declined(used, "push", "m", str(tmp_path / "empty"), "-v", "v2")
    assert_declined(used, "push", "m", str(src), "-v", "v2", env={"WEIGHTVAULT_COMPRESSION": "zstd"})
    assert_declined(used, "push", "m", str(src), "-v", "v2", env={"WEIGHTVAULT_SERVER": "http://127.0.0.1:1"})
    assert_declined(used, "--config", str(tmp_path / "c.yaml"), "push", "m", str(src), "-v", "v2")
    # an adapter: the full path resolves its base into lineage
    adapter = tmp_path / "adapter"
    write_random(adapter / "adapter_model.safetensors", 1000, seed=4)
    (adapter / "adapter_config.json").write_text('{"base_model_name_or_path": "org/base"}')
    assert_declined(used, "push", "a", str(adapter), "-v", "v1")


def test_homes_it_does_not_handle_decline(used: Path, src: Path, tmp_path: Path) -> None:
    # a journal entry the index has not applied yet
    (used / "store" / layout.journal_key(99)).write_bytes(b"{}")
    seq = int(
        sqlite3.connect(used / "index.db")
        .execute("SELECT value FROM store_state WHERE name = 'journal_seq'")
        .fetchone()[0]
    )
    entry_path = used / "store" / layout.journal_key(seq + 1)
    entry_path.write_bytes(json.dumps({"format": 1, "kind": "other", "seq": seq + 1}).encode())
    assert_declined(used, "push", "m", str(src), "-v", "v2")
    entry_path.unlink()
    # any trace of encryption: key pins in the home, a keyring in the store
    (used / "keys").mkdir()
    assert_declined(used, "push", "m", str(src), "-v", "v2")
    (used / "keys").rmdir()
    keyring = used / "store" / layout.keyring_key("m")
    keyring.parent.mkdir(parents=True, exist_ok=True)
    keyring.write_bytes(b"{}")
    assert_declined(used, "push", "m", str(src), "-v", "v2")
    keyring.unlink()
    # a setting it does not read
    (used / "config.yaml").write_text("encryption:\n  enabled: true\n")
    assert_declined(used, "push", "m", str(src), "-v", "v2")
    (used / "config.yaml").write_text("replicas:\n  b: file:///tmp/nowhere\n")
    assert_declined(used, "push", "m", str(src), "-v", "v2")
    (used / "config.yaml").unlink()
    # a store without its index, and an index without its store
    store_only = tmp_path / "store-only"
    store_only.mkdir()
    os.rename(used / "store", store_only / "store")
    assert_declined(store_only, "push", "m", str(src), "-v", "v2")
    assert_declined(used, "push", "m", str(src), "-v", "v2")
    # a new home with a bad source is not created
    assert_declined(tmp_path / "new", "push", "m", str(tmp_path / "missing"), "-v", "v1")
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize(
    "args",
    [
        ("push", "m", "MISSING", "-v", "v2"),
        ("push", "bad name!", "SRC", "-v", "v2"),
        ("push", "m", "SRC", "-v", "v1"),
        ("push", "m", "EMPTY", "-v", "v2"),
    ],
)
def test_bad_input_is_reported_as_the_full_path_reports_it(
    used: Path, src: Path, tmp_path: Path, args: tuple[str, ...]
) -> None:
    (tmp_path / "empty").mkdir()
    names = {"MISSING": str(tmp_path / "missing"), "SRC": str(src), "EMPTY": str(tmp_path / "empty")}
    line = [names.get(a, a) for a in args]
    want = full(used, *line)
    got = entry(used, *line)
    assert want.returncode != 0
    assert (got.returncode, got.stdout, got.stderr) == (want.returncode, want.stdout, want.stderr)
    assert len(got.stderr.strip().splitlines()) == 1
