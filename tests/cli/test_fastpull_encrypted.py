"""The light pull of an encrypted model (``vault.lightkeys``, ``vault.lightpull``): served without
the vault stack when its keys are local key files this home trusts and pinned, with the same
tree, cache and output as the full CLI; the full path's error line and exit code, with nothing
placed, for a wrong or missing key and a tampered chunk; a decline (nothing written, nothing
printed) for every key provider or state it does not judge itself, after which the full path
still pulls."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from weightvault.core import layout
from weightvault.keys.env import generate_key_text
from weightvault.keys.local_file import LocalFileKeyProvider
from weightvault.registry.snapshot import SnapshotUnavailable
from weightvault.vault import fastopen
from weightvault.vault.trust import LocalTrust
from weightvault.vault.vault import Vault

from ..conftest import tree_bytes, write_random
from .conftest import DECLINED, entry, full
from .test_fastpull import assert_same, fast

MODEL = "org/secret"
ENCRYPTED = "encryption:\n  enabled: true\n"
#: what the light pull of an encrypted model never loads (``assert_same`` checks the rest)
NOT_LOADED = ("pydantic", "sqlalchemy", "typer", "weightvault.vault.records", "weightvault.registry.index")


def settle(home: Path) -> None:
    """The index follows every change in the store (the light path serves only then)."""
    with Vault.open(home) as v:
        v.refresh()


@contextmanager
def pushed_v1(home: Path, src: Path, config: str) -> Iterator[Vault]:
    """A new ``home`` with ``config``, ``src`` pushed as ``MODEL`` v1 by the full path; the vault
    stays open for what the caller adds."""
    home.mkdir()
    (home / "config.yaml").write_text(config)
    with Vault.open(home) as v:
        v.push(MODEL, src, version="v1")
        yield v


def make_source(root: Path) -> Path:
    src = root / "src"
    write_random(src / "model.safetensors", 2_500_000, seed=11)
    write_random(src / "deep" / "weights.bin", 300_000, seed=12)
    (src / "config.json").write_text('{"hidden": 8}')
    return src


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home pushing encrypted (the default local key file), two versions and an alias."""
    root = tmp_path_factory.mktemp("encpull")
    src = make_source(root)
    home = root / "home"
    with pushed_v1(home, src, ENCRYPTED) as v:
        v.set_alias(MODEL, "prod", "v1")
        (src / "config.json").write_text('{"hidden": 16}')
        v.push(MODEL, src, version="v2")
    (src / "config.json").write_text('{"hidden": 8}')
    settle(home)
    shutil.rmtree(home / "cache")
    return home


@pytest.fixture
def home(built: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(built, tmp_path / "home", symlinks=True))


@pytest.fixture
def source(built: Path) -> Path:
    return built.parent / "src"


def light(home: Path, dest: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """``pull`` by the light path alone: (exit code, stdout, stderr); DECLINED when it declined."""
    code, out, err, heavy = fast(home, "pull", *args[:1], str(dest), *args[1:], env=env)
    assert not set(heavy) & set(NOT_LOADED), heavy
    return code, out, err


def test_an_encrypted_pull_is_light_and_leaves_what_the_full_path_leaves(
    home: Path, source: Path, tmp_path: Path
) -> None:
    """Read from the store by the light path (no pydantic, SQLAlchemy, Typer: ``assert_same``):
    the same files, modes, private cache entries and output as the full CLI."""
    runs = tmp_path / "runs"
    err = assert_same(home, runs, f"{MODEL}@v1", reads=True)
    assert "3 files" in err and "from cache" in err
    assert_same(home, runs, f"{MODEL}@prod", "--json", reads=True)
    assert_same(home, runs, MODEL, "-q", "--include", "*.bin", reads=True)
    assert_same(home, runs, f"{MODEL}@v1", "--link-mode", "hardlink", reads=True)  # fills the cache
    code, _, err = light(home, tmp_path / "out", f"{MODEL}@v1", "-q")
    assert code == 0, err
    assert tree_bytes(tmp_path / "out") == tree_bytes(source)


def test_the_light_path_opens_the_keys_itself(home: Path, source: Path, tmp_path: Path) -> None:
    probe = (
        "import json, sys\n"
        "from weightvault.cli.fastpull import serve\n"
        "assert serve(sys.argv[1:])\n"
        "names = ('weightvault.vault.keyring', 'weightvault.vault.vault', 'weightvault.vault.state', "
        "'pydantic', 'sqlalchemy', 'yaml')\n"
        "sys.stderr.write(json.dumps(sorted(m for m in names if m in sys.modules)))\n"
    )
    dest = tmp_path / "out"
    args = ["--home", str(home), "pull", f"{MODEL}@v2", str(dest), "--json"]
    got = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=120)
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stderr) == ["weightvault.vault.keyring", "yaml"]
    assert json.loads(got.stdout)["bytes_from_store"] > 2_500_000
    assert (dest / "config.json").read_text() == '{"hidden": 16}'
    assert (dest / "model.safetensors").read_bytes() == (source / "model.safetensors").read_bytes()


def _same_failure(home: Path, tmp_path: Path, *, served: bool) -> str:
    """The light path (serving the failure itself, or declining it) and the entry point fail as
    the full CLI does: same exit code, same one line, nothing placed. Returns that line."""
    pristine = Path(shutil.copytree(home, tmp_path / "pristine", symlinks=True))
    dest = tmp_path / "new" / "out"
    seen = []
    for run in ("light", "entry", "full"):
        shutil.rmtree(home)
        shutil.copytree(pristine, home, symlinks=True)
        if run == "light":
            code, out, err = light(home, dest, f"{MODEL}@v1", "-q")
            if not served:
                assert (code, out, err) == (DECLINED, "", "")
                assert not (tmp_path / "new").exists()
                continue
        else:
            got = (entry if run == "entry" else full)(home, "pull", f"{MODEL}@v1", str(dest), "-q")
            code, out, err = got.returncode, got.stdout, got.stderr
        assert not (tmp_path / "new").exists()  # nothing placed, no staging folder, no parent
        assert not list((home / "cache").rglob("*.wv-tmp")) if (home / "cache").exists() else True
        seen.append((code, out, err))
    assert all(s == seen[-1] for s in seen)
    code, out, err = seen[-1]
    assert code not in (0, DECLINED) and out == "" and err.startswith("error: ") and err.count("\n") == 1
    return err


def test_a_wrong_key_declines_and_fails_as_the_full_path_does(home: Path, tmp_path: Path) -> None:
    LocalFileKeyProvider.create(tmp_path / "other.key")
    (home / "keys" / "kek.key").write_bytes((tmp_path / "other.key").read_bytes())
    err = _same_failure(home, tmp_path, served=False)
    assert "local_file" in err and "cannot open the keys" in err


def test_a_missing_key_declines_and_fails_as_the_full_path_does(home: Path, tmp_path: Path) -> None:
    (home / "keys" / "kek.key").unlink()
    err = _same_failure(home, tmp_path, served=False)
    assert "kek.key" in err and "does not exist" in err


def test_a_key_file_others_can_read_declines_and_fails_as_the_full_path_does(
    home: Path, tmp_path: Path
) -> None:
    os.chmod(home / "keys" / "kek.key", 0o644)
    err = _same_failure(home, tmp_path, served=False)
    assert "chmod 600" in err


def test_a_tampered_sealed_chunk_fails_on_the_light_path_as_on_the_full_path(
    home: Path, tmp_path: Path
) -> None:
    pack = max(
        (p for p in (home / "store" / "packs").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size
    )
    data = bytearray(pack.read_bytes())
    data[len(data) // 3] ^= 0x01  # inside the big file's sealed chunks
    os.chmod(pack, 0o644)
    pack.write_bytes(bytes(data))
    err = _same_failure(home, tmp_path, served=True)
    assert "failed authentication" in err


def test_a_replaced_keyring_declines_and_fails_as_the_full_path_does(home: Path, tmp_path: Path) -> None:
    """The store's keyring swapped for another domain's (same KEK): the pin refuses it."""
    other = tmp_path / "other"
    other.mkdir()
    (other / "keys").mkdir()
    shutil.copy2(home / "keys" / "kek.key", other / "keys" / "kek.key")  # the same KEK, no pins
    (other / "config.yaml").write_text(ENCRYPTED)
    with Vault.open(other) as v:
        v.push(MODEL, make_source(tmp_path / "o"), version="v1")
    ring = home / "store" / layout.keyring_key(MODEL)
    os.chmod(ring, 0o644)
    ring.write_bytes((other / "store" / layout.keyring_key(MODEL)).read_bytes())
    err = _same_failure(home, tmp_path, served=False)
    assert "another id key" in err


def test_a_deleted_keyring_of_a_pinned_model_declines_and_fails_as_the_full_path_does(
    home: Path, tmp_path: Path
) -> None:
    (home / "store" / layout.keyring_key(MODEL)).unlink()
    err = _same_failure(home, tmp_path, served=False)
    assert "keyring is missing" in err or "no keys" in err


def test_an_alias_remembered_as_rolled_back_declines(home: Path, tmp_path: Path) -> None:
    trust = LocalTrust(home / "keys")
    pinned = trust.alias_seqs(MODEL)["prod"]
    assert trust.check_alias(MODEL, "prod", pinned + 10) is None
    assert trust.check_alias(MODEL, "prod", pinned, "alias prod was rolled back ({pinned})") == pinned + 10
    assert light(home, tmp_path / "out", f"{MODEL}@prod")[0] == DECLINED
    got = entry(home, "pull", f"{MODEL}@prod", str(tmp_path / "out"))
    assert got.returncode != 0 and "rolled back" in got.stderr and not (tmp_path / "out").exists()
    assert light(home, tmp_path / "out", f"{MODEL}@v1", "-q")[0] == 0  # a label is not the alias


def _declined_then_pulled(
    home: Path, source: Path, tmp_path: Path, env: dict[str, str] | None = None
) -> None:
    dest = tmp_path / "out"
    assert light(home, dest, f"{MODEL}@v1", env=env) == (DECLINED, "", "")
    assert not dest.exists()
    got = entry(home, "pull", f"{MODEL}@v1", str(dest), "-q", env=env)
    assert got.returncode == 0, got.stderr
    assert tree_bytes(dest) == tree_bytes(source)


FAST_ARGON = {"memory_kib": 19456, "iterations": 2, "lanes": 1}


def other_provider(kind: str) -> tuple[dict[str, object], dict[str, str]]:
    """The config of a ``passphrase`` or ``env`` key provider and the environment it reads."""
    if kind == "passphrase":
        provider: dict[str, object] = {"type": "passphrase", "passphrase_env": "WV_TEST_PW", **FAST_ARGON}
        return provider, {"WV_TEST_PW": "correct horse battery staple"}
    return {"type": "env", "variable": "WV_TEST_KEK"}, {"WV_TEST_KEK": generate_key_text()}


@pytest.mark.parametrize("kind", ["passphrase", "env"])
def test_other_key_providers_are_declined_and_pulled_by_the_full_path(
    kind: str, source: Path, tmp_path: Path
) -> None:
    provider, env = other_provider(kind)
    home = _pushed_with_provider(tmp_path, source, provider, env)
    _declined_then_pulled(home, source, tmp_path, env)


def _pushed_with_provider(
    tmp_path: Path,
    source: Path,
    provider: dict[str, object],
    env: dict[str, str],
    unset: tuple[str, ...] = (),
) -> Path:
    """A new home whose config encrypts with ``provider``, with ``source`` pushed as v1 under
    ``env`` (and without the variables ``unset``)."""
    home = tmp_path / "home"
    config = json.dumps({"encryption": {"enabled": True, "provider": provider}})
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        for k in unset:
            mp.delenv(k, raising=False)
        with pushed_v1(home, source, config) as vault:
            vault.refresh()
    return home


def test_a_kms_key_is_declined_and_pulled_by_the_full_path(
    moto_endpoint: str, source: Path, tmp_path: Path
) -> None:
    import boto3

    creds = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    kms = boto3.client(
        "kms", endpoint_url=moto_endpoint, region_name="us-east-1", **{k.lower(): v for k, v in creds.items()}
    )
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    provider: dict[str, object] = {
        "type": "aws_kms",
        "key_id": key_id,
        "endpoint_url": moto_endpoint,
        "region": "us-east-1",
    }
    home = _pushed_with_provider(tmp_path, source, provider, creds, unset=("AWS_PROFILE",))
    _declined_then_pulled(home, source, tmp_path, creds)


def test_a_provider_this_home_rotated_to_that_is_not_a_key_file_is_declined(
    home: Path, source: Path, tmp_path: Path
) -> None:
    LocalTrust(home / "keys").add_provider({"type": "env", "variable": "WV_UNUSED"})
    _declined_then_pulled(home, source, tmp_path)


def test_a_staged_key_file_of_an_unfinished_rotation_is_declined(
    home: Path, source: Path, tmp_path: Path
) -> None:
    LocalFileKeyProvider.create(home / "keys" / "kek.key.new")
    _declined_then_pulled(home, source, tmp_path)


def test_a_keyring_this_home_has_not_pinned_is_declined_then_pinned_by_the_full_path(
    home: Path, source: Path, tmp_path: Path
) -> None:
    """Another machine's model (or a pin removed): the full path pins it, then the light path serves."""
    LocalTrust(home / "keys").forget(MODEL)
    _declined_then_pulled(home, source, tmp_path)
    assert light(home, tmp_path / "again", f"{MODEL}@v1", "-q")[0] == 0
    assert tree_bytes(tmp_path / "again") == tree_bytes(source)


def test_after_key_rotation_and_reencryption_the_pull_stays_light(
    home: Path, source: Path, tmp_path: Path
) -> None:
    """A new KEK (the key file replaced, every keyring rewrapped), then a re-encryption under a new
    data key: each time the light path opens the rotated keyring and pulls the same bytes."""
    old_key = (home / "keys" / "kek.key").read_bytes()
    with Vault.open(home) as v:
        v.rotate_keys()
        v.refresh()
    assert (home / "keys" / "kek.key").read_bytes() != old_key
    code, _, err = light(home, tmp_path / "rewrapped", f"{MODEL}@v1", "-q")
    assert code == 0, err
    assert tree_bytes(tmp_path / "rewrapped") == tree_bytes(source)
    with Vault.open(home) as v:
        report = v.rotate_keys(MODEL, reencrypt=True)
        v.refresh()
    assert report.models
    code, _, err = light(home, tmp_path / "reencrypted", f"{MODEL}@v1", "-q")
    assert code == 0, err
    assert tree_bytes(tmp_path / "reencrypted") == tree_bytes(source)
    code, _, err = light(home, tmp_path / "v2", f"{MODEL}@v2", "-q")
    assert code == 0, err
    assert (tmp_path / "v2" / "config.json").read_text() == '{"hidden": 16}'


def test_after_a_new_domain_the_pull_is_light_again(home: Path, source: Path, tmp_path: Path) -> None:
    with Vault.open(home) as v:
        v.rotate_domain(MODEL)
        v.refresh()
    code, _, err = light(home, tmp_path / "out", f"{MODEL}@prod", "-q")
    assert code == 0, err
    assert tree_bytes(tmp_path / "out") == tree_bytes(source)


def test_only_a_pull_reads_the_encryption_section_and_only_with_local_key_files(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    with Vault.open(home) as v:
        v.refresh()
    key = {"type": "local_file", "path": "/k"}
    accepted = [
        {"enabled": True},
        {"enabled": False, "provider": key},
        {"provider": key, "trusted_providers": [key, {"type": "local_file", "path": "~/old.key"}]},
    ]
    refused = [
        {"enabled": "yes"},
        {"provider": {"type": "passphrase", "passphrase_env": "X"}},
        {"provider": {"type": "local_file"}},
        {"provider": {**key, "extra": 1}},
        {"trusted_providers": [{"type": "env"}]},
        {"trusted_providers": key},
        {"enabled": True, "unknown": 1},
        "on",
    ]
    for section in accepted + refused:
        (home / "config.yaml").write_text(json.dumps({"encryption": section}))
        with pytest.raises(SnapshotUnavailable):  # ``ls``/``show`` never read it
            fastopen.open_home(str(home))
        if section in accepted:
            fastopen.open_home(str(home), fastopen.PULL_ENV, fastopen.PULL_KEYS)[1].close()
        else:
            with pytest.raises(SnapshotUnavailable):
                fastopen.open_home(str(home), fastopen.PULL_ENV, fastopen.PULL_KEYS)


def test_an_older_keyring_put_back_is_declined_even_with_every_file_cached(
    home: Path, source: Path, tmp_path: Path
) -> None:
    """The bucket puts back the keyring as it was before a re-encryption (same KEK, so it opens):
    the full path refuses it by the generation this home pinned. With every file in the cache no
    chunk is read, so only that pin check can stop the light path: it must decline."""
    ring = home / "store" / layout.keyring_key(MODEL)
    old = ring.read_bytes()
    with Vault.open(home) as v:
        v.rotate_keys(MODEL, reencrypt=True)
        v.refresh()
    warm = ["-q", "--link-mode", "hardlink"]
    assert light(home, tmp_path / "warm", f"{MODEL}@v1", *warm)[0] == 0  # fills the cache
    os.chmod(ring, 0o644)
    ring.write_bytes(old)
    assert light(home, tmp_path / "out", f"{MODEL}@v1", *warm) == (DECLINED, "", "")
    got = entry(home, "pull", f"{MODEL}@v1", str(tmp_path / "out"), *warm)
    assert got.returncode != 0 and "older than generation" in got.stderr
    assert not (tmp_path / "out").exists()


def test_a_version_pushed_before_the_model_was_encrypted_is_pulled_light(
    source: Path, tmp_path: Path
) -> None:
    """Its manifest, recipes and chunks are plain, in a model that has keys now: opened as the full
    path opens them (the keyed recipe first, then the plain one), bytes hashed."""
    home = tmp_path / "home"
    with Vault.open(home) as v:
        v.push(MODEL, source, version="v1")
    (home / "config.yaml").write_text(ENCRYPTED)
    changed = Path(shutil.copytree(source, tmp_path / "changed"))
    (changed / "config.json").write_text('{"hidden": 32}')
    with Vault.open(home) as v:
        v.push(MODEL, changed, version="v2")
        v.refresh()
    assert (home / "store" / layout.keyring_key(MODEL)).exists()
    for label, tree in (("v1", source), ("v2", changed)):
        code, _, err = light(home, tmp_path / label, f"{MODEL}@{label}", "-q")
        assert code == 0, err
        assert tree_bytes(tmp_path / label) == tree_bytes(tree)
