"""The warm-cache fast path of ``pull`` (``cli/fastpull.py``, ``vault/lightpull.py``): the same
tree on disk (bytes, modes, the cache's own inode for a hardlink) and the same output as the
full CLI, without the vault stack; and a decline, with nothing written and nothing printed,
in every case it does not fully handle."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from weightvault.core.revision import parse_ref
from weightvault.registry.snapshot import SnapshotUnavailable
from weightvault.testing.loopfs import LoopMountUnavailableError, xfs_mount
from weightvault.vault import config, fastopen, lightpull
from weightvault.vault.cache import FileCache
from weightvault.vault.vault import Vault

from ..conftest import write_random
from .conftest import DECLINED, entry, full, serve_alone, serve_script

HEAVY = (
    "typer",
    "click",
    "sqlalchemy",
    "pydantic",
    "yaml",
    "rich",
    "weightvault.vault.vault",
    "weightvault.vault.records",
    "weightvault.vault.reader",
    "weightvault.registry.index",
)
#: serve() alone: exit 0 when the fast path pulled, DECLINED (and no output) when it declined
SERVE = serve_script("weightvault.cli.fastpull", HEAVY)


def fast(home: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str, list[str]]:
    """(exit code, stdout, stderr without the probe line, heavy modules loaded) of serve() alone."""
    return serve_alone(SERVE, home, *args, env=env)


def timeless(text: str) -> str:
    """The output with the pull's measured duration (the one thing two runs cannot share) blanked."""
    text = re.sub(r" in \d+\.\ds; placed ", " in Ts; placed ", text)
    return re.sub(r'"seconds": [0-9.e-]+', '"seconds": T', text)


def tree(root: Path) -> dict[str, tuple[str, int, bytes | None]]:
    """Every entry under ``root``: kind, permission bits, and a file's bytes."""
    out: dict[str, tuple[str, int, bytes | None]] = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        kind = "dir" if stat.S_ISDIR(st.st_mode) else "file" if stat.S_ISREG(st.st_mode) else "other"
        out[p.relative_to(root).as_posix()] = (
            kind,
            st.st_mode & 0o7777,
            p.read_bytes() if kind == "file" else None,
        )
    return out


def inodes(root: Path) -> dict[str, int]:
    return {p.relative_to(root).as_posix(): p.stat().st_ino for p in sorted(root.rglob("*")) if p.is_file()}


def settle(home: Path) -> None:
    with Vault.open(home) as v:
        v.refresh()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home with two versions of a model whose files are all in the cache (a full pull put them
    there), an empty file and a subfolder among them."""
    root = tmp_path_factory.mktemp("fastpull")
    src = root / "src"
    write_random(src / "model.safetensors", 300_000, seed=1)
    (src / "config.json").write_text('{"a": 1}')
    write_random(src / "deep" / "er" / "weights.bin", 70_000, seed=2)
    (src / "empty.txt").write_bytes(b"")
    home = root / "home"
    with Vault.open(home) as v:
        v.push("org/m", src, version="v1", message="first [bold]one[/bold]")
        v.set_alias("org/m", "prod", "v1")
        (src / "config.json").write_text('{"a": 2}')
        v.push("org/m", src, version="v2")
        # a hardlink pull fills the cache (``cache_fill: auto``), as a copy from this local store would not
        v.pull("org/m@v1", root / "warm1", link_mode="hardlink")
        v.pull("org/m@v2", root / "warm2", link_mode="hardlink")
    settle(home)
    return home


@pytest.fixture
def home(built: Path, tmp_path: Path) -> Path:
    """A copy of the built home (store, index, cache) that a test may change."""
    return Path(shutil.copytree(built, tmp_path / "home", symlinks=True))


def assert_same(
    home: Path, tmp: Path, *args: str, env: dict[str, str] | None = None, reads: bool = False
) -> str:
    """``pull ARGS DEST``: the fast path pulls without the heavy stack and leaves the same tree
    (and, for a hardlink, the same inodes: the cache's) with the same output as the full CLI;
    so does the entry point. Returns the fast path's stderr.

    ``reads``: the pull reads files from the store (the chunk reader may load), and each of the
    three runs starts from the home as it was (same cache), which is then compared too."""
    tmp.mkdir(exist_ok=True)
    n = len(list(tmp.iterdir()))
    dest = tmp / f"out-{n}"  # each run pulls into the same path (it is in the output), moved aside after
    kept = [tmp / f"{name}-{n}" for name in ("fast", "full", "entry")]
    pristine = Path(shutil.copytree(home, tmp / f"home-{n}", symlinks=True)) if reads else None
    caches: list[dict[str, tuple[str, int, bytes | None]]] = []

    def next_run() -> None:
        if pristine is not None:
            caches.append(tree(home / "cache") if (home / "cache").exists() else {})
            shutil.rmtree(home)
            shutil.copytree(pristine, home, symlinks=True)

    ref, rest = args[0], args[1:]
    code, out, err, heavy = fast(home, "pull", ref, str(dest), *rest, env=env)
    assert code == 0, f"fast path declined {args}: {err}"
    allowed = ({"rich"} if "--json" not in args and "-q" not in args else set()) | (
        {"yaml"} if (home / "config.yaml").exists() else set()
    )
    if reads:
        allowed.add("weightvault.vault.reader")
    assert set(heavy) <= allowed, heavy
    dest.rename(kept[0])
    next_run()
    got = full(home, "pull", ref, str(dest), *rest, env=env)
    assert got.returncode == 0, got.stderr
    dest.rename(kept[1])
    assert (timeless(out), timeless(err)) == (timeless(got.stdout), timeless(got.stderr))
    assert tree(kept[0]) == tree(kept[1])
    next_run()
    via = entry(home, "pull", ref, str(dest), *rest, env=env)
    dest.rename(kept[2])
    assert (via.returncode, timeless(via.stdout), timeless(via.stderr)) == (
        0,
        timeless(got.stdout),
        timeless(got.stderr),
    )
    assert tree(kept[2]) == tree(kept[1])
    if pristine is not None:
        next_run()
        assert caches[0] == caches[1] == caches[2]  # the same entries, modes and bytes
        assert not [p for p in tmp.iterdir() if p.name.endswith(".wv-tmp")]  # no staging left
    elif "hardlink" in err or '"hardlink"' in out:
        assert inodes(kept[0]) == inodes(kept[1]) == inodes(kept[2])
    return err


def test_a_hardlink_pull_leaves_the_same_tree_and_prints_the_same(home: Path, tmp_path: Path) -> None:
    err = assert_same(home, tmp_path, "org/m@v1", "--link-mode", "hardlink")
    assert "placed 4 by hardlink" in err and "from cache" in err
    assert_same(home, tmp_path, "org/m@prod", "--link-mode=hardlink", "--json")
    assert_same(home, tmp_path, "org/m", "--link-mode", "hardlink", "-q")
    err = assert_same(
        home, tmp_path, "org/m@v2", "--link-mode", "hardlink", "--include", "*.bin", "--include", "no*"
    )
    assert "warning: --include 'no*' matches no file" in err
    assert_same(home, tmp_path, "org/m@v2", "--link-mode", "hardlink", "--exclude", "deep/*", "--json")


#: what a pull that only links cached files never runs, so never imports: their start-up was
#: most of its time (thread pools load ``logging``; ``ctypes.util`` loads ``subprocess``)
UNUSED_BY_LINKS = (
    "concurrent.futures",
    "logging",
    "ctypes",
    "subprocess",
    "shutil",
    "weightvault.storage.direct_io",
    "weightvault.storage.local",
)


def test_a_pull_that_only_links_starts_no_thread_pool_and_loads_no_c_library(
    home: Path, tmp_path: Path
) -> None:
    probe = (
        "import sys, threading\n"
        "from weightvault.cli.fastpull import serve\n"
        "assert serve(sys.argv[1:])\n"
        "print(threading.active_count())\n"
        f"print(','.join(m for m in {UNUSED_BY_LINKS!r} if m in sys.modules))\n"
    )
    dest = tmp_path / "out"
    args = ["--home", str(home), "pull", "org/m@v1", str(dest), "--link-mode", "hardlink", "--json"]
    got = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=120)
    assert got.returncode == 0, got.stderr
    *_printed, threads, loaded = got.stdout.splitlines()
    assert (threads, loaded) == ("1", "")  # no thread left behind either
    cached = {p.stat().st_ino for p in (home / "cache" / "files").rglob("*") if p.is_file()}
    placed = inodes(dest)
    assert len(placed) == 4 and set(placed.values()) <= cached


def test_the_link_mode_from_the_config_or_the_environment(home: Path, tmp_path: Path) -> None:
    assert_same(home, tmp_path, "org/m@v1", env={"WEIGHTVAULT_LINK_MODE": "hardlink"})
    # auto: a clone where the filesystem can, else the fallback, here hardlink
    (home / "config.yaml").write_text("link_fallback: hardlink\n")
    err = assert_same(home, tmp_path, "org/m@v1")
    assert "by hardlink" in err or "by reflink" in err


def test_cache_fill_does_not_change_what_it_places(home: Path, tmp_path: Path) -> None:
    """It only places cached entries, whatever ``cache_fill`` says; a value the settings refuse
    is declined, so that the full path reports it."""
    (home / "config.yaml").write_text("cache_fill: always\nlink_mode: hardlink\n")
    assert "by hardlink" in assert_same(home, tmp_path, "org/m@v1")
    (home / "config.yaml").write_text("cache_fill: sometimes\n")
    _declines(home, tmp_path / "out", "org/m@v1", "--link-mode", "hardlink")
    got = entry(home, "pull", "org/m@v1", str(tmp_path / "out"), "--link-mode", "hardlink")
    assert got.returncode == 4 and "cache_fill" in got.stderr and not (tmp_path / "out").exists()


def test_a_partial_destination_gets_the_missing_files_only(home: Path, tmp_path: Path) -> None:
    dest = tmp_path / "out"
    outputs = []
    for name in ("fast", "full"):
        write_random(dest / "deep" / "er" / "weights.bin", 70_000, seed=2)  # the version's bytes
        (dest / "mine.txt").write_text("not the version's: kept")
        if name == "fast":
            code, _out, err, _ = fast(home, "pull", "org/m@v1", str(dest), "--link-mode", "hardlink")
        else:
            got = full(home, "pull", "org/m@v1", str(dest), "--link-mode", "hardlink")
            code, err = got.returncode, got.stderr
        assert code == 0, err
        outputs.append(timeless(err))
        dest.rename(tmp_path / name)
    assert outputs[0] == outputs[1] and "placed 3 by hardlink" in outputs[0]
    assert tree(tmp_path / "fast") == tree(tmp_path / "full")
    assert (tmp_path / "fast" / "mine.txt").read_text() == "not the version's: kept"


def _declines(home: Path, dest: Path, *args: str, env: dict[str, str] | None = None) -> None:
    """The fast path declines: nothing printed, and ``dest`` exactly as it was (or still absent)."""
    before = tree(dest) if dest.exists() else None
    code, out, err, _ = fast(home, "pull", *args[:1], str(dest), *args[1:], env=env)
    assert (code, out, err) == (DECLINED, "", "")
    assert (tree(dest) if dest.exists() else None) == before


@pytest.mark.parametrize(
    "args",
    [
        ("org/m@v1", "--link-mode", "hardlink", "--provider", "local"),
        ("org/m@v1", "--link-mode", "hardlink", "--with-base"),
        ("org/m@v1", "--link-mode", "bogus"),
        ("org/m@v1", "--link-mode", "hardlink", "--include", "nothing*"),  # no file: exit 3 there
        ("org/m@nope", "--link-mode", "hardlink"),
        ("nobody@v1", "--link-mode", "hardlink"),
        ("org/m@v1", "--link-mode", "hardlink", "--unknown"),
    ],
)
def test_lines_it_does_not_handle_are_declined(home: Path, tmp_path: Path, args: tuple[str, ...]) -> None:
    _declines(home, tmp_path / "out", *args)
    ref = full(home, "pull", args[0], str(tmp_path / "ref"), *args[1:])
    via = entry(home, "pull", args[0], str(tmp_path / "via"), *args[1:])

    def seen(got: subprocess.CompletedProcess[str], dest: Path) -> tuple[int, str, str]:
        err = timeless(got.stderr).replace(str(dest), "DEST")
        return got.returncode, timeless(got.stdout), err.replace("entry.py", "app.py")  # the usage line

    assert seen(via, tmp_path / "via") == seen(ref, tmp_path / "ref")  # the entry point ran the full path


def _cache(home: Path) -> FileCache:
    return FileCache(home / "cache", 1 << 40)


def test_a_file_missing_from_the_cache_or_a_tampered_entry_is_read_from_the_store(
    home: Path, tmp_path: Path
) -> None:
    """Into a new folder the fast path reads it from the store, as the full path does (which drops
    the tampered entry and caches the file again); into a folder holding other files it declines."""
    with Vault.open(home) as v:
        files = v.show("org/m@v1").files
    big = next(f for f in files if f.path == "model.safetensors")
    entry_path = _cache(home).path_for(big.sha256)
    os.chmod(entry_path, 0o644)  # written to through a link, as far as the cache can tell
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "mine.txt").write_text("kept")
    _declines(home, existing, "org/m@v1", "--link-mode", "hardlink")
    assert entry_path.exists()  # the check changed nothing: the full path drops the entry itself
    err = assert_same(home, tmp_path / "runs", "org/m@v1", "--link-mode", "hardlink", reads=True)
    assert "4 files, 361.3 KiB (68.4 KiB from cache)" in err and "placed 4 by hardlink" in err, err
    got = entry(home, "pull", "org/m@v1", str(tmp_path / "out"), "--link-mode", "hardlink", "--json")
    assert got.returncode == 0 and '"bytes_from_store": 300000' in got.stdout
    entry_path = _cache(home).path_for(big.sha256)
    entry_path.unlink()
    _declines(home, existing, "org/m@v1", "--link-mode", "hardlink")
    out = assert_same(home, tmp_path / "runs", "org/m@v1", "--link-mode", "hardlink", "--json", reads=True)
    assert out == ""


def test_an_existing_different_file_is_declined_with_or_without_force(home: Path, tmp_path: Path) -> None:
    dest = tmp_path / "out"
    (dest / "deep" / "er").mkdir(parents=True)
    (dest / "config.json").write_text("mine")
    _declines(home, dest, "org/m@v1", "--link-mode", "hardlink")
    _declines(home, dest, "org/m@v1", "--link-mode", "hardlink", "--force")
    (dest / "config.json").unlink()
    (dest / "config.json").mkdir()  # a folder where the version has a file
    _declines(home, dest, "org/m@v1", "--link-mode", "hardlink", "--force")
    conflict = entry(home, "pull", "org/m@v1", str(dest), "--link-mode", "hardlink")
    assert conflict.returncode != 0 and conflict.stderr.startswith("error: ")


def test_an_encrypted_model_is_served_with_its_key_file_and_declined_without(tmp_path: Path) -> None:
    """Its keys in the default key file: served, warm and cold (``test_fastpull_encrypted.py`` has
    the rest); without the key file: declined, and the full path reports it."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.yaml").write_text("encryption:\n  enabled: true\n")
    write_random(tmp_path / "src" / "w.bin", 10_000, seed=4)
    with Vault.open(home) as v:
        v.push("secret", tmp_path / "src", version="v1")
        v.pull("secret@v1", tmp_path / "warm", link_mode="hardlink")
    settle(home)
    (home / "config.yaml").unlink()  # the default settings: the store still has the keyring
    for args, dest in ((("--link-mode", "hardlink"), "linked"), ((), "cold")):
        if dest == "cold":
            shutil.rmtree(home / "cache")
        code, _out, err, _ = fast(home, "pull", "secret@v1", str(tmp_path / dest), *args)
        assert code == 0, err
        assert (tmp_path / dest / "w.bin").read_bytes() == (tmp_path / "src" / "w.bin").read_bytes()
    (home / "keys" / "kek.key").unlink()
    _declines(home, tmp_path / "out", "secret@v1")
    got = entry(home, "pull", "secret@v1", str(tmp_path / "out"))
    assert got.returncode != 0 and "kek.key" in got.stderr and not (tmp_path / "out").exists()


def two_homes(tmp_path: Path, config: str = "") -> tuple[Path, Path]:
    """Two homes (two machines) on one store folder."""
    homes = (tmp_path / "a", tmp_path / "b")
    for h in homes:
        h.mkdir()
        (h / "config.yaml").write_text(f"store_url: {(tmp_path / 'store').as_uri()}\n{config}")
    return homes


def test_another_machines_push_makes_it_decline_and_the_full_path_answer(tmp_path: Path) -> None:
    """Two homes on one store. B's cache holds every file of A's second push (B pulled the first,
    the second shares its files), but B's index has not seen that push: the fast path must not
    answer from it, the full path follows the store and pulls the new version, after which the
    fast path serves again."""
    a, b = two_homes(tmp_path, "link_mode: hardlink\n")
    write_random(tmp_path / "m" / "w.bin", 40_000, seed=5)
    write_random(tmp_path / "m" / "x.bin", 40_000, seed=6)
    with Vault.open(a) as va:
        va.push("m", tmp_path / "m", version="v1")
    with Vault.open(b) as vb:
        vb.pull("m", tmp_path / "b-warm")
    settle(b)
    (tmp_path / "m" / "x.bin").rename(tmp_path / "m" / "y.bin")  # same bytes: in B's cache already
    with Vault.open(a) as va:
        va.push("m", tmp_path / "m", version="v2")
    _declines(b, tmp_path / "out", "m")
    got = entry(b, "pull", "m", str(tmp_path / "out"))
    assert got.returncode == 0 and "pulled m@v2" in got.stderr and "placed 2 by hardlink" in got.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["w.bin", "y.bin"]
    err = assert_same(b, tmp_path / "again", "m")
    assert "pulled m@v2" in err


def test_a_cache_entry_that_goes_away_mid_pull_is_undone_and_declined(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checks passed, then an entry vanished (another process's prune): the files already
    placed are removed, the folders made are removed, and the caller takes the full path."""
    where, snap = fastopen.open_home(str(home))
    real = FileCache.lookup
    calls: list[str] = []

    def flaky(self: FileCache, sha256: str, size: int, private: bool = False) -> Path | None:
        calls.append(sha256)
        return None if len(calls) == 2 else real(self, sha256, size, private)

    monkeypatch.setattr(FileCache, "lookup", flaky)
    dest = tmp_path / "new" / "out"
    with snap, pytest.raises(SnapshotUnavailable):
        lightpull.light_pull(
            where,
            snap,
            parse_ref("org/m@v1"),
            dest,
            include=None,
            exclude=None,
            force=False,
            link_mode="hardlink",
            progress=lambda n: None,
            on_start=lambda n: None,
        )
    assert len(calls) >= 2 and not (tmp_path / "new").exists()


def test_defaults_mirror_the_settings() -> None:
    fields = config.Settings.model_fields
    for key, value in lightpull.DEFAULTS.items():
        assert fields[key].default == value, key
    for key in fastopen.PULL_ENV.values():
        assert key in fields


@pytest.fixture(scope="module")
def xfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with contextlib.ExitStack() as stack:
        try:
            mountpoint = stack.enter_context(xfs_mount(tmp_path_factory.mktemp("xfs-image")))
        except LoopMountUnavailableError as exc:
            pytest.skip(f"no XFS with reflink in a loop-mounted image here: {exc}")
        yield mountpoint


def test_a_clone_on_xfs_leaves_the_same_tree_and_prints_the_same(xfs: Path) -> None:
    """``auto`` and ``reflink`` on a filesystem with copy-on-write clones: placed by reflink,
    independent writable files (not the cache's inode), as the full path places them."""
    root = xfs / "fastpull"
    write_random(root / "src" / "w.safetensors", 200_000, seed=7)
    (root / "src" / "cfg.json").write_text("{}")
    with Vault.open(root / "home") as v:
        v.push("m", root / "src", version="v1")
        v.pull("m", root / "warm")
    settle(root / "home")
    err = assert_same(root / "home", root / "runs", "m@v1")
    assert "placed 2 by reflink" in err
    assert_same(root / "home", root / "runs", "m@v1", "--link-mode", "reflink", "--json")
    cached = {p.stat().st_ino for p in (root / "home" / "cache" / "files").rglob("*") if p.is_file()}
    placed = set(inodes(root / "runs" / "fast-0").values())
    assert len(placed) == 2 and not cached & placed


# ---- a cold pull: files read from the store --------------------------------------------------


@pytest.fixture
def cold(home: Path) -> Path:
    """The built home with an empty cache: every file comes from the store."""
    shutil.rmtree(home / "cache")
    return home


def _cache_files(home: Path) -> list[str]:
    """Every file in the cache; each is a whole entry whose bytes have the SHA-256 of its name
    (never a temp file, never a partial entry)."""
    root = home / "cache"
    found = sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []
    for p in found:
        assert (
            p.relative_to(root).parts[0] == "files" and hashlib.sha256(p.read_bytes()).hexdigest() == p.name
        )
    return [p.name for p in found]


def test_a_cold_pull_leaves_the_same_tree_and_cache_and_prints_the_same(cold: Path, tmp_path: Path) -> None:
    """Read from the store by the light path (no SQLAlchemy, pydantic, Typer: ``assert_same``), the
    same files, modes, cache entries and output as the full CLI, in every placement."""
    runs = tmp_path / "runs"
    err = assert_same(cold, runs, "org/m@v1", reads=True)  # the cache as the full path leaves it
    assert "4 files, 361.3 KiB (0 B from cache)" in err, err
    out = assert_same(cold, runs, "org/m@prod", "--json", reads=True)
    assert out == ""
    assert_same(cold, runs, "org/m", "-q", "--include", "*.bin", reads=True)
    err = assert_same(cold, runs, "org/m", "--include", "*.bin", "--include", "no*", reads=True)
    assert "warning: --include 'no*' matches no file" in err
    err = assert_same(cold, runs, "org/m@v2", "--link-mode", "hardlink", "--exclude", "deep/*", reads=True)
    assert "placed 3 by hardlink" in err
    assert_same(cold, runs, "org/m@v1", "--link-mode", "copy", "--json", reads=True)
    (cold / "config.yaml").write_text("cache_fill: always\n")  # the cache entry and the copy in one pass
    err = assert_same(cold, runs, "org/m@v1", reads=True)
    assert "placed 4 by direct write" not in err, err
    (cold / "config.yaml").write_text("cache_enabled: false\n")  # straight into the destination
    err = assert_same(cold, runs, "org/m@v1", reads=True)
    assert "placed 4 by direct write" in err, err


#: besides the vault stack, what reading a plain model's chunks does not need: the keys
UNUSED_BY_PLAIN_READS = (*HEAVY, "weightvault.vault.keyring", "cryptography")


def test_a_cold_pull_reads_through_the_snapshot_and_loads_no_heavy_module(cold: Path, tmp_path: Path) -> None:
    """The light path itself read the bytes (the chunk reader is loaded, the index's ORM is not)."""
    probe = (
        "import json, sys\n"
        "from weightvault.cli.fastpull import serve\n"
        "assert serve(sys.argv[1:])\n"
        f"heavy = sorted(m for m in {UNUSED_BY_PLAIN_READS!r} if m in sys.modules)\n"
        "sys.stderr.write(json.dumps(heavy))\n"
    )
    dest = tmp_path / "out"
    args = ["--home", str(cold), "pull", "org/m@v1", str(dest), "--json"]
    got = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=120)
    assert got.returncode == 0, got.stderr
    assert got.stderr == '["weightvault.vault.reader"]'
    assert '"bytes_from_store": 370008' in got.stdout
    with Vault.open(cold) as v:
        files = {f.path: f for f in v.show("org/m@v1").files}
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()) == sorted(files)


def test_a_cold_pull_into_an_empty_folder_is_served_into_a_full_one_declined(
    cold: Path, tmp_path: Path
) -> None:
    outputs = []
    for name in ("fast", "full"):
        dest = tmp_path / "out"
        dest.mkdir()
        if name == "fast":
            code, _out, err, _ = fast(cold, "pull", "org/m@v1", str(dest))
        else:
            got = full(cold, "pull", "org/m@v1", str(dest))
            code, err = got.returncode, got.stderr
        shutil.rmtree(cold / "cache")  # the next run is cold too
        assert code == 0, err
        outputs.append(timeless(err))
        dest.rename(tmp_path / name)
    assert outputs[0] == outputs[1]
    assert tree(tmp_path / "fast") == tree(tmp_path / "full")
    dest = tmp_path / "existing"
    write_random(dest / "deep" / "er" / "weights.bin", 70_000, seed=2)  # the version's bytes
    (dest / "mine.txt").write_text("kept")
    _declines(cold, dest, "org/m@v1")
    got = entry(cold, "pull", "org/m@v1", str(dest))
    assert got.returncode == 0 and "; placed 3 by " in got.stderr, got.stderr  # the fourth is there
    assert (dest / "mine.txt").read_text() == "kept" and (
        dest / "model.safetensors"
    ).stat().st_size == 300_000


def test_a_compressed_model_is_pulled_cold_the_same_way(tmp_path: Path) -> None:
    """Compressed chunks are decoded by the same reader (its codec loads on first use)."""
    from weightvault.testing.safetensors import safetensors_prefix

    home = tmp_path / "home"
    home.mkdir()
    (home / "config.yaml").write_text("compression: float\n")
    src = tmp_path / "src"
    src.mkdir()
    head = safetensors_prefix(600_000)
    (src / "t.safetensors").write_bytes(head + (bytes(range(256)) * 3_000)[: 600_000 - len(head)])
    (src / "notes.txt").write_text("compressible " * 5_000)
    with Vault.open(home) as v:
        v.push("z", src, version="v1")
    settle(home)
    shutil.rmtree(home / "cache", ignore_errors=True)
    out = assert_same(home, tmp_path / "runs", "z@v1", "--json", reads=True)
    assert out == ""
    assert tree(tmp_path / "runs" / "fast-0") == tree(src)


def test_a_float_compressed_model_is_pulled_cold_by_the_light_path(tmp_path: Path) -> None:
    """bf16 shards pushed with ``compression: float`` are codec-3 blobs, which the light path's
    reader decodes to the same tree as the full CLI."""
    from weightvault.cas.compression import Codec
    from weightvault.demo.synthetic import generate_model

    home = tmp_path / "home"
    home.mkdir()
    (home / "config.yaml").write_text("compression: float\n")
    src = tmp_path / "src"
    generate_model(src, 4 << 20, shards=2, dtype="bf16")
    with Vault.open(home) as v:
        v.push("f", src, version="v1")
        ids = [c for f in v.show("f").files for c, _ in v._recipe(f.sha256, "f").chunks]
        codecs = {loc.codec for loc in v.index.locate_chunks(ids).values()}
    assert Codec.FLOAT_PLANES in codecs
    settle(home)
    shutil.rmtree(home / "cache", ignore_errors=True)
    out = assert_same(home, tmp_path / "runs", "f@v1", "--json", reads=True)
    assert out == ""
    assert tree(tmp_path / "runs" / "fast-0") == tree(src)


def test_another_machines_push_makes_a_cold_pull_decline_and_the_full_path_answer(tmp_path: Path) -> None:
    """B's index has not seen A's second push: the light path must not read the store through it."""
    a, b = two_homes(tmp_path)
    write_random(tmp_path / "m" / "w.bin", 40_000, seed=5)
    with Vault.open(a) as va:
        va.push("m", tmp_path / "m", version="v1")
    settle(b)
    write_random(tmp_path / "m" / "x.bin", 40_000, seed=6)
    with Vault.open(a) as va:
        va.push("m", tmp_path / "m", version="v2")
    _declines(b, tmp_path / "out", "m")
    got = entry(b, "pull", "m", str(tmp_path / "out"))
    assert got.returncode == 0 and "pulled m@v2" in got.stderr, got.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["w.bin", "x.bin"]
    shutil.rmtree(b / "cache")
    # B's index follows now (its recipes are the store's objects, not in B's index): served
    err = assert_same(b, tmp_path / "again", "m", reads=True)
    assert "pulled m@v2" in err


def test_a_server_line_is_declined_and_pulled_through_the_server(built: Path, tmp_path: Path) -> None:
    from weightvault.testing.server import ServerProcess

    client = tmp_path / "client"
    code, out, err, _ = fast(
        client, "--server", "http://127.0.0.1:9", "pull", "org/m@v1", str(tmp_path / "x")
    )
    assert (code, out, err) == (DECLINED, "", "")
    assert not (tmp_path / "x").exists()
    served = Path(shutil.copytree(built, tmp_path / "served", symlinks=True))
    with Vault.open(served) as v:
        token = v.access.create_token("root", "admin", admin=True).token
    with ServerProcess(served) as server:
        got = entry(
            client,
            "--server",
            server.url,
            "pull",
            "org/m@v1",
            str(tmp_path / "out"),
            "--json",
            env={"WEIGHTVAULT_TOKEN": token},
        )
    assert got.returncode == 0, got.stderr
    assert '"bytes_total": 370008' in got.stdout
    assert (tmp_path / "out" / "model.safetensors").stat().st_size == 300_000


def test_a_remote_primary_is_declined_and_pulled_by_the_full_path(
    tmp_path: Path, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        region_name="us-east-1",
        aws_access_key_id="t",
        aws_secret_access_key="t",
    ).create_bucket(Bucket="weights")
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.yaml").write_text(
        "storage_type: aws\n"
        "aws:\n"
        "  region: us-east-1\n"
        f"  endpoint_url: {moto_endpoint}\n"
        "  access_key_id: t\n"
        "  secret_access_key: t\n"
        "  model_weights:\n"
        "    s3_bucket: weights\n"
    )
    write_random(tmp_path / "src" / "w.bin", 50_000, seed=8)
    with Vault.open(home) as v:
        v.push("m", tmp_path / "src", version="v1")
        v.refresh()
    _declines(home, tmp_path / "out", "m@v1")
    got = entry(home, "pull", "m@v1", str(tmp_path / "out"))
    assert got.returncode == 0, got.stderr
    assert (tmp_path / "out" / "w.bin").read_bytes() == (tmp_path / "src" / "w.bin").read_bytes()


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_a_corrupt_pack_fails_the_light_path_as_it_fails_the_full_path(
    cold: Path, tmp_path: Path, damage: str
) -> None:
    """Same error line, same exit code, nothing placed and the same (verified) cache, by either path."""
    pack = max(
        (p for p in (cold / "store" / "packs").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size
    )
    data = bytearray(pack.read_bytes())
    os.chmod(pack, 0o644)
    if damage == "flip":
        data[len(data) // 3] ^= 0xFF  # inside the big file's chunks
        pack.write_bytes(bytes(data))
    else:
        pack.write_bytes(bytes(data[: len(data) // 2]))
    pristine = Path(shutil.copytree(cold, tmp_path / "pristine", symlinks=True))
    seen = []
    for run in ("fast", "full"):
        shutil.rmtree(cold)
        shutil.copytree(pristine, cold, symlinks=True)
        dest = tmp_path / "new" / "out"
        if run == "fast":
            code, out, err, heavy = fast(cold, "pull", "org/m@v1", str(dest), "-q")
            assert "weightvault.registry.index" not in heavy  # detected on the light path
        else:
            got = full(cold, "pull", "org/m@v1", str(dest), "-q")
            code, out, err = got.returncode, got.stdout, got.stderr
        assert not (tmp_path / "new").exists()  # nothing placed, no staging folder, no parent made
        seen.append((code, out, err, _cache_files(cold)))
    assert seen[0] == seen[1]
    code, out, err, _ = seen[0]
    assert code != 0 and out == "" and err.startswith("error: ") and err.count("\n") == 1
    assert ("corrupt (hash mismatch)" if damage == "flip" else "truncated") in err


def test_an_interrupt_during_a_cold_pull_leaves_nothing(cold: Path, tmp_path: Path) -> None:
    """A real SIGINT once the first chunk is written: the light path stops, undoes everything
    (no destination, no staging folder, no cache temp file) and exits as the full path does on
    Ctrl-C.

    The probe installs Python's own SIGINT handler: a process started in the background by a
    shell without job control (a CI job) inherits SIGINT ignored, and Python then installs no
    handler, so the signal did nothing and the pull completed (exit 99). The signal goes to the
    main thread, as a Ctrl-C that interrupts its wait for the workers."""
    probe = (
        "import signal, sys, threading\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "main = threading.main_thread().ident\n"
        "from weightvault.vault import reader\n"
        "real = reader.ChunkReader.write_file\n"
        "once = threading.Lock()\n"
        "def interrupted(self, recipe, out, what, progress):\n"
        "    def first(n):\n"
        "        progress(n)\n"
        "        if once.acquire(blocking=False):\n"
        "            signal.pthread_kill(main, signal.SIGINT)\n"
        "    return real(self, recipe, out, what, first)\n"
        "reader.ChunkReader.write_file = interrupted\n"
        "from weightvault.cli.fastpull import serve\n"
        "serve(sys.argv[1:])\n"
        "sys.exit(99)\n"
    )
    dest = tmp_path / "new" / "out"
    args = ["--home", str(cold), "pull", "org/m@v1", str(dest), "-q"]
    got = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=120)
    assert (got.returncode, got.stdout, got.stderr) == (130, "", "interrupted\n")
    assert not (tmp_path / "new").exists()
    _cache_files(cold)  # whole, verified entries only (a file finished before the interrupt may stay)


def test_a_push_leaves_the_index_current_so_the_next_pull_is_light(tmp_path: Path) -> None:
    """The push applies its own journal entries before it returns: the first pull after it does
    not need the full stack to refresh (it did before: the index's cursor stayed one push behind)."""
    home, src = tmp_path / "home", tmp_path / "src"
    write_random(src / "w.bin", 300_000)
    with Vault.open(home) as v:
        v.push("org/fresh", src, version="v1")
    where, snap = fastopen.open_home(str(home))  # raised SnapshotUnavailable before
    with snap:
        assert where.home == home.absolute()
    probe = "import sys\nfrom weightvault.cli.fastpull import serve\nsys.exit(not serve(sys.argv[1:]))"
    line = ["--home", str(home), "pull", "org/fresh@v1", str(tmp_path / "out"), "-q"]
    got = subprocess.run(
        [sys.executable, "-c", probe, *line],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert got.returncode == 0, got.stderr
    assert (tmp_path / "out" / "w.bin").read_bytes() == (src / "w.bin").read_bytes()
