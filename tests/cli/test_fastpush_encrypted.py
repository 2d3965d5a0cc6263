"""The light push of an encrypted model (``vault.lightpush`` with ``vault.lightkeys``): a model
that already has a keyring this home pinned, under a local key file it trusts, is pushed without
the vault stack and leaves what the full CLI leaves (the same keyed chunk ids, commit ids, recipe
names, rows and output; sealed bytes differ only by their random nonces, so they are compared
opened); every other case declines with nothing written, and the full path then pushes (or fails
with its own one line); a re-encryption that drops the push's data key slot before its commit
fails it as it fails the full push."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from weightvault.core import layout
from weightvault.core.errors import ConcurrentModificationError
from weightvault.keys.local_file import LocalFileKeyProvider
from weightvault.storage.local import LocalBackend
from weightvault.vault import lightpush
from weightvault.vault.codecs import BlobCodec
from weightvault.vault.keyring import Domain, KeyManager
from weightvault.vault.source import scan_source
from weightvault.vault.store import SEALED_MANIFEST_MAGIC
from weightvault.vault.trust import LocalTrust
from weightvault.vault.vault import Vault

from ..conftest import tree_bytes, write_random
from .conftest import DECLINED, entry, full
from .test_fastpull import fast as fast_pull
from .test_fastpull_encrypted import ENCRYPTED, MODEL, other_provider, pushed_v1
from .test_fastpush import (
    bf16_safetensors,
    fast,
    home_entries,
    index_rows,
    snapshot,
    stat_cache,
    store_objects,
    stored_chunks,
    timeless,
)


def make_source(root: Path) -> Path:
    src = root / "src"
    write_random(src / "model-00001-of-00002.safetensors", 9_500_000, seed=21)
    bf16_safetensors(src / "model-00002-of-00002.safetensors", 200_000, seed=22)
    (src / "config.json").write_text('{"hidden": 8}')
    write_random(src / "tok" / "vocab.bin", 40_000, seed=23)
    return src


def change(src: Path) -> None:
    """v2 of the source: one file changed, one added (new chunks besides deduplicated ones)."""
    (src / "config.json").write_text('{"hidden": 16}')
    write_random(src / "extra.bin", 1_500_000, seed=24)


def built_home(root: Path, config: str = ENCRYPTED) -> tuple[Path, Path]:
    """(a home whose model has v1, pushed encrypted by the full path, its index current; the
    source of v2)."""
    src = make_source(root)
    home = root / "home"
    with pushed_v1(home, src, config) as v:
        v.refresh()
    change(src)
    return home, src


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return built_home(tmp_path_factory.mktemp("encpush"))


@pytest.fixture
def home(built: tuple[Path, Path], tmp_path: Path) -> Path:
    return Path(shutil.copytree(built[0], tmp_path / "home", symlinks=True))


@pytest.fixture
def src(built: tuple[Path, Path]) -> Path:
    return built[1]


# ---- the same as the full path, sealed bytes opened ----------------------------------------------


def domain_of(home: Path) -> Domain:
    """The model's domain, opened here with the home's key file (not by the code under test)."""
    store = LocalBackend(home / "store")
    store_id = json.loads((home / "store" / layout.CONFIG_KEY).read_bytes())["id"]
    config = {"type": "local_file", "path": str(home / "keys" / "kek.key")}
    dom = KeyManager(lambda: dict(config), store, store, None, store_id).domain(MODEL)
    assert dom is not None
    return dom


def opened_rows(home: Path) -> dict[str, Any]:
    """``index_rows`` with sealed manifests and recipes opened (their bytes carry random nonces)."""
    dom = domain_of(home)
    rows = index_rows(home)
    sealed = [r for r in rows["manifests"] if r[1].startswith(SEALED_MANIFEST_MAGIC)]
    assert sealed, "no sealed manifest"
    rows["manifests"] = sorted((c, dom.open_manifest(c, b)) for c, b in rows["manifests"])
    rows["recipes"] = sorted((n, s, dom.open_recipe(n, b)) for n, s, b in rows["recipes"])
    assert rows["chunks"] and all(r[3] & 0x80 for r in rows["chunks"]), "a chunk was not sealed"
    return rows


def opened_chunks(home: Path) -> dict[bytes, bytes]:
    """Every indexed chunk opened from its pack, checked against its keyed id."""
    codec = BlobCodec(domain_of(home))
    db = sqlite3.connect(home / "index.db")
    try:
        rows = {r[0]: r[1:] for r in db.execute("SELECT id, codec, raw_len, key_slot FROM chunks")}
    finally:
        db.close()
    out = {}
    for cid, stored in stored_chunks(home).items():
        kind, raw_len, slot = rows[cid]
        out[cid] = bytes(codec.decode(kind, memoryview(stored), raw_len, cid, slot))
        assert codec.chunk_id_for(kind)(out[cid]) == cid
    return out


def opened_objects(home: Path) -> dict[str, Any]:
    """``store_objects`` with sealed manifests and recipes opened, and refs without their MAC
    (over the creation time, which differs; checked by the pulls and ``verify`` instead)."""
    dom = domain_of(home)
    out = store_objects(home)
    for key in list(out):
        name = key.rsplit("/", 1)[-1]
        if key.endswith("/"):
            continue  # a folder
        if key.startswith("manifests/"):
            out[key] = dom.open_manifest(name, out[key])
        elif key.startswith("recipes/"):
            out[key] = dom.open_recipe(name, out[key])
        elif key.startswith("refs/"):
            assert isinstance(out[key].pop("mac"), str)
    return out


def assert_same_encrypted_homes(a: Path, b: Path) -> None:
    assert opened_rows(a) == opened_rows(b)
    assert opened_chunks(a) == opened_chunks(b)
    assert opened_objects(a) == opened_objects(b)
    assert home_entries(a) == home_entries(b)
    if (a / "statcache.db").exists():  # an encrypted push keeps nothing in it (keyed chunks)
        assert stat_cache(a) == stat_cache(b)


HEAVY_NOT_LOADED = ("sqlalchemy", "pydantic", "pydantic_settings", "typer", "weightvault.vault.vault")


@pytest.mark.parametrize("args", [("-q",), ("--json",), ("-m", "second")])
def test_an_encrypted_push_is_light_and_equals_the_full_path(
    home: Path, src: Path, tmp_path: Path, args: tuple[str, ...]
) -> None:
    """Twin homes (one copied from the other: the same keyring and pins) get v2 by the full CLI
    and by the light path: the same exit code, output, rows, keyed ids and opened contents."""
    twin = Path(shutil.copytree(home, tmp_path / "twin", symlinks=True))
    want = full(home, "push", MODEL, str(src), "-v", "v2", *args)
    assert want.returncode == 0, want.stderr
    code, out, err, heavy = fast(twin, "push", MODEL, str(src), "-v", "v2", *args)
    assert code == 0, f"the light path declined: {err}"
    assert set(heavy) <= {"rich"} and not set(heavy) & set(HEAVY_NOT_LOADED), heavy
    assert timeless(out) == timeless(want.stdout)
    assert timeless(err.splitlines()[-1] if err else "") == timeless(
        want.stderr.splitlines()[-1] if want.stderr else ""
    )
    assert_same_encrypted_homes(home, twin)


def test_with_compression_the_light_encrypted_push_equals_the_full_path(tmp_path: Path) -> None:
    home, src = built_home(tmp_path / "b", ENCRYPTED + "compression: float\n")
    twin = Path(shutil.copytree(home, tmp_path / "twin", symlinks=True))
    want = full(home, "push", MODEL, str(src), "-v", "v2", "-q")
    assert want.returncode == 0, want.stderr
    code, _out, err, heavy = fast(twin, "push", MODEL, str(src), "-v", "v2", "-q")
    assert (code, heavy) == (0, []), err
    assert_same_encrypted_homes(home, twin)
    assert {r[3] for r in index_rows(twin)["chunks"]} - {0x80}, "nothing was compressed under the seal"


def test_the_entry_point_takes_the_light_path_for_an_encrypted_push(home: Path, src: Path) -> None:
    got = entry(home, "push", MODEL, str(src), "-v", "v2", "-q", env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert got.returncode == 0, got.stderr
    imported = {
        line.split("|")[-1].strip() for line in got.stderr.splitlines() if line.startswith("import time:")
    }
    light = {"weightvault.vault.lightpush", "weightvault.vault.lightkeys", "weightvault.vault.refauth"}
    assert light <= imported
    assert not {"sqlalchemy", "pydantic", "typer", "weightvault.vault.records"} & imported


def test_a_light_encrypted_push_pulls_back_and_verifies(home: Path, src: Path, tmp_path: Path) -> None:
    code, _out, err, _heavy = fast(home, "push", MODEL, str(src), "-v", "v2", "-q")
    assert code == 0, err
    check = full(home, "verify", f"{MODEL}@v2", "--read-data")
    assert check.returncode == 0, check.stderr
    got = full(home, "pull", f"{MODEL}@v2", str(tmp_path / "full-pull"), "-q")
    assert got.returncode == 0, got.stderr
    assert tree_bytes(tmp_path / "full-pull") == tree_bytes(src)
    shutil.rmtree(home / "cache")
    code, _out, err, heavy = fast_pull(home, "pull", f"{MODEL}@v2", str(tmp_path / "light-pull"), "-q")
    assert code == 0, err
    assert "sqlalchemy" not in heavy
    assert tree_bytes(tmp_path / "light-pull") == tree_bytes(src)
    # and the next push of the model takes the light path again (its journal entries followed)
    write_random(src / "extra.bin", 1_000, seed=25)
    try:
        code, _out, err, _heavy = fast(home, "push", MODEL, str(src), "-v", "v3", "-q")
        assert code == 0, err
    finally:
        write_random(src / "extra.bin", 1_500_000, seed=24)


# ---- declines: nothing written, then the full path pushes --------------------------------------


def assert_declined_then_pushed(
    home: Path, src: Path, env: dict[str, str] | None = None, label: str = "v2"
) -> None:
    before = snapshot(home)
    code, out, err, _heavy = fast(home, "push", MODEL, str(src), "-v", label, "-q", env=env)
    assert (code, out, err) == (DECLINED, "", "")
    assert snapshot(home) == before
    got = entry(home, "push", MODEL, str(src), "-v", label, "-q", env=env)
    assert got.returncode == 0, got.stderr
    with Vault.open(home) as v:
        assert label in [x.label for x in v.list_versions(MODEL)]
        v.pull(f"{MODEL}@{label}", home.parent / f"check-{label}")
    assert tree_bytes(home.parent / f"check-{label}") == tree_bytes(src)


def test_a_first_encrypted_push_declines(src: Path, tmp_path: Path) -> None:
    """A new home with encryption on, and an existing home's model without a keyring (a new one,
    or a plain model turned encrypted): the full path creates the keyring."""
    new = tmp_path / "new"
    new.mkdir()
    (new / "config.yaml").write_text(ENCRYPTED)
    assert_declined_then_pushed(new, src, label="v1")
    assert (new / "store" / layout.keyring_key(MODEL)).is_file()
    plain = tmp_path / "plain"
    with Vault.open(plain) as v:
        v.push(MODEL, src, version="v1")
        v.refresh()
    (plain / "config.yaml").write_text(ENCRYPTED)
    assert_declined_then_pushed(plain, src)
    assert (plain / "store" / layout.keyring_key(MODEL)).is_file()


def test_a_model_this_home_has_not_pinned_declines_then_the_full_path_pins_it(home: Path, src: Path) -> None:
    LocalTrust(home / "keys").forget(MODEL)
    assert_declined_then_pushed(home, src)
    assert LocalTrust(home / "keys").pin(MODEL) is not None


def test_an_unfinished_rotation_declines(home: Path, src: Path, tmp_path: Path) -> None:
    # a key file staged by a rotation
    staged = home / "keys" / "kek.key.new"
    LocalFileKeyProvider.create(staged)
    code, *_ = fast(home, "push", MODEL, str(src), "-v", "v2", "-q")
    assert code == DECLINED
    staged.unlink()
    # a moved domain half done: the keyring names its next domain
    with Vault.open(home) as v:
        dom = v.keys.domain(MODEL)
        assert dom is not None
        v.keys.begin_domain(dom)
        v.refresh()
    assert_declined_then_pushed(home, src)


def test_a_reencryption_half_done_declines(home: Path, src: Path) -> None:
    with Vault.open(home) as v:
        dom = v.keys.domain(MODEL)
        assert dom is not None
        v.keys.add_data_key(dom, v.keys.configured())  # a re-encryption's first step: its target slot
        v.refresh()
    assert_declined_then_pushed(home, src)


def test_a_provider_this_home_rotated_to_that_is_not_a_key_file_declines(home: Path, src: Path) -> None:
    LocalTrust(home / "keys").add_provider({"type": "env", "variable": "WV_UNUSED"})
    assert_declined_then_pushed(home, src)


@pytest.mark.parametrize("kind", ["passphrase", "env"])
def test_other_key_providers_decline(kind: str, tmp_path: Path) -> None:
    provider, env = other_provider(kind)
    config = json.dumps({"encryption": {"enabled": True, "provider": provider}})
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        home, src = built_home(tmp_path, config)
        assert_declined_then_pushed(home, src, env)


def test_a_kms_key_declines(moto_endpoint: str, tmp_path: Path) -> None:
    import boto3

    creds = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    kms = boto3.client(
        "kms", endpoint_url=moto_endpoint, region_name="us-east-1", **{k.lower(): v for k, v in creds.items()}
    )
    provider = {
        "type": "aws_kms",
        "key_id": kms.create_key()["KeyMetadata"]["KeyId"],
        "endpoint_url": moto_endpoint,
        "region": "us-east-1",
    }
    config = json.dumps({"encryption": {"enabled": True, "provider": provider}})
    with pytest.MonkeyPatch.context() as mp:
        for k, v in creds.items():
            mp.setenv(k, v)
        mp.delenv("AWS_PROFILE", raising=False)
        home, src = built_home(tmp_path, config)
        assert_declined_then_pushed(home, src, creds)


def _same_failure(home: Path, src: Path) -> str:
    """Declined with nothing written; the entry point then fails as the full CLI does: the same
    exit code and one line, and no version. Returns the line."""
    before = snapshot(home)
    assert fast(home, "push", MODEL, str(src), "-v", "v2", "-q")[:3] == (DECLINED, "", "")
    assert snapshot(home) == before
    twin = Path(shutil.copytree(home, home.parent / "twin", symlinks=True))
    want = full(twin, "push", MODEL, str(src), "-v", "v2", "-q")
    got = entry(home, "push", MODEL, str(src), "-v", "v2", "-q")
    named = want.stderr.replace(str(twin), str(home))  # an error may name the home's key file
    assert (got.returncode, got.stdout, got.stderr) == (want.returncode, want.stdout, named)
    assert got.returncode not in (0, DECLINED) and got.stderr.count("\n") == 1
    assert not (home / "store" / layout.version_ref_key(MODEL, "v2")).exists()
    return got.stderr


def test_a_wrong_key_file_fails_as_the_full_path_does(home: Path, src: Path, tmp_path: Path) -> None:
    LocalFileKeyProvider.create(tmp_path / "other.key")
    (home / "keys" / "kek.key").write_bytes((tmp_path / "other.key").read_bytes())
    assert "cannot open the keys" in _same_failure(home, src)


def test_a_missing_key_file_fails_as_the_full_path_does(home: Path, src: Path) -> None:
    (home / "keys" / "kek.key").unlink()
    assert "does not exist" in _same_failure(home, src)


# ---- a re-encryption between the key open and the commit ---------------------------------------


def _rotating_elsewhere(home: Path, tmp_path: Path) -> Any:
    """A progress callback that, on its first call (the push is chunking: its keys are open and it
    holds the shared lock), re-encrypts the model from another home on the same store and key
    file (which drops the data key slot the push seals under)."""
    other = tmp_path / "other-home"
    other.mkdir(parents=True)
    key = {"type": "local_file", "path": str(home / "keys" / "kek.key")}
    (other / "config.yaml").write_text(
        json.dumps({"store_url": str(home / "store"), "encryption": {"enabled": True, "provider": key}})
    )
    done: list[int] = []

    def progress(_n: int) -> None:
        if not done:
            done.append(1)
            with Vault.open(other) as v:
                report = v.rotate_keys(MODEL, reencrypt=True)
            assert report.models[MODEL]["reencrypt"]["slot"] == 2

    return progress


def test_a_reencryption_during_the_push_fails_it_as_it_fails_the_full_push(
    home: Path, src: Path, tmp_path: Path
) -> None:
    twin = Path(shutil.copytree(home, tmp_path / "twin", symlinks=True))
    with Vault.open(twin) as v, pytest.raises(ConcurrentModificationError) as full_error:
        v.push(MODEL, src, version="v2", progress=_rotating_elsewhere(twin, tmp_path / "a"))
    where = lightpush.find_home(str(home))
    files = scan_source(src, default_ignores=True)
    with pytest.raises(ConcurrentModificationError) as light_error:
        rotating = _rotating_elsewhere(home, tmp_path / "b")
        lightpush.light_push(where, MODEL, files, 0, version="v2", message="", progress=rotating)
    assert str(light_error.value) == str(full_error.value)
    assert "rotated during the push" in str(light_error.value)
    for h in (home, twin):  # no version: neither a ref nor an index row
        assert not (h / "store" / layout.version_ref_key(MODEL, "v2")).exists()
        db = sqlite3.connect(h / "index.db")
        assert db.execute("SELECT count(*) FROM versions WHERE label = 'v2'").fetchone() == (0,)
        db.close()
    # pushing again works once this home trusts the KEK the other home rotated to (the full
    # path: the keyring moved on, this home's pin follows it)
    (new_key,) = (home / "keys").glob("kek-*.key")
    trusted = {"type": "local_file", "path": str(new_key)}
    (home / "config.yaml").write_text(
        json.dumps({"encryption": {"enabled": True, "trusted_providers": [trusted]}})
    )
    got = entry(home, "push", MODEL, str(src), "-v", "v2", "-q")
    assert got.returncode == 0, got.stderr
    with Vault.open(home) as v:
        v.pull(f"{MODEL}@v2", tmp_path / "out")
        assert v.verify(f"{MODEL}@v2", read_data=True).ok
    assert tree_bytes(tmp_path / "out") == tree_bytes(src)
