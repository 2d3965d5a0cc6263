"""The warm-cache fast path of ``pull`` (``cli/fastpull.py``, ``vault/warmpull.py``): the same
tree on disk (bytes, modes, the cache's own inode for a hardlink) and the same output as the
full CLI, without the vault stack; and a decline, with nothing written and nothing printed,
in every case it does not fully handle."""

from __future__ import annotations

import contextlib
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
from weightvault.vault import config, fastopen, warmpull
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


def assert_same(home: Path, tmp: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """``pull ARGS DEST``: the fast path pulls without the heavy stack and leaves the same tree
    (and, for a hardlink, the same inodes: the cache's) with the same output as the full CLI;
    so does the entry point. Returns the fast path's stderr."""
    tmp.mkdir(exist_ok=True)
    n = len(list(tmp.iterdir()))
    dest = tmp / f"out-{n}"  # each run pulls into the same path (it is in the output), moved aside after
    kept = [tmp / f"{name}-{n}" for name in ("fast", "full", "entry")]
    ref, rest = args[0], args[1:]
    code, out, err, heavy = fast(home, "pull", ref, str(dest), *rest, env=env)
    assert code == 0, f"fast path declined {args}: {err}"
    allowed = ({"rich"} if "--json" not in args and "-q" not in args else set()) | (
        {"yaml"} if (home / "config.yaml").exists() else set()
    )
    assert set(heavy) <= allowed, heavy
    dest.rename(kept[0])
    got = full(home, "pull", ref, str(dest), *rest, env=env)
    assert got.returncode == 0, got.stderr
    dest.rename(kept[1])
    assert (timeless(out), timeless(err)) == (timeless(got.stdout), timeless(got.stderr))
    assert tree(kept[0]) == tree(kept[1])
    via = entry(home, "pull", ref, str(dest), *rest, env=env)
    dest.rename(kept[2])
    assert (via.returncode, timeless(via.stdout), timeless(via.stderr)) == (
        0,
        timeless(got.stdout),
        timeless(got.stderr),
    )
    assert tree(kept[2]) == tree(kept[1])
    if "hardlink" in err or '"hardlink"' in out:
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
        ("org/m@v1", "--link-mode", "copy"),  # a copy reads the data: the full path does it
        ("org/m@v1",),  # auto with the default fallback (copy) on a filesystem without clones
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
    if args == ("org/m@v1",) and "reflink" in full(home, "pull", "org/m@v1", str(tmp_path / "probe")).stderr:
        pytest.skip("this filesystem clones: auto is a reflink here, which the fast path handles")
    _declines(home, tmp_path / "out", *args)
    ref = full(home, "pull", args[0], str(tmp_path / "ref"), *args[1:])
    via = entry(home, "pull", args[0], str(tmp_path / "via"), *args[1:])

    def seen(got: subprocess.CompletedProcess[str], dest: Path) -> tuple[int, str, str]:
        err = timeless(got.stderr).replace(str(dest), "DEST")
        return got.returncode, timeless(got.stdout), err.replace("entry.py", "app.py")  # the usage line

    assert seen(via, tmp_path / "via") == seen(ref, tmp_path / "ref")  # the entry point ran the full path


def _cache(home: Path) -> FileCache:
    return FileCache(home / "cache", 1 << 40)


def test_a_file_missing_from_the_cache_or_a_tampered_entry_is_declined(home: Path, tmp_path: Path) -> None:
    with Vault.open(home) as v:
        files = v.show("org/m@v1").files
    big = next(f for f in files if f.path == "model.safetensors")
    entry_path = _cache(home).path_for(big.sha256)
    os.chmod(entry_path, 0o644)  # written to through a link, as far as the cache can tell
    _declines(home, tmp_path / "out", "org/m@v1", "--link-mode", "hardlink")
    assert entry_path.exists()  # the check changed nothing: the full path drops the entry itself
    got = entry(home, "pull", "org/m@v1", str(tmp_path / "out"), "--link-mode", "hardlink", "--json")
    assert got.returncode == 0 and '"bytes_from_store": 300000' in got.stdout
    entry_path = _cache(home).path_for(big.sha256)
    entry_path.unlink()
    _declines(home, tmp_path / "out2", "org/m@v1", "--link-mode", "hardlink")


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


def test_an_encrypted_model_is_declined(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.yaml").write_text("encryption:\n  enabled: true\n")
    write_random(tmp_path / "src" / "w.bin", 10_000, seed=4)
    with Vault.open(home) as v:
        v.push("secret", tmp_path / "src", version="v1")
        v.pull("secret@v1", tmp_path / "warm")
    settle(home)
    (home / "config.yaml").unlink()  # settings the fast path accepts; the store still has the keyring
    _declines(home, tmp_path / "out", "secret@v1", "--link-mode", "hardlink")


def test_another_machines_push_makes_it_decline_and_the_full_path_answer(tmp_path: Path) -> None:
    """Two homes on one store. B's cache holds every file of A's second push (B pulled the first,
    the second shares its files), but B's index has not seen that push: the fast path must not
    answer from it, the full path follows the store and pulls the new version, after which the
    fast path serves again."""
    shared = tmp_path / "store"
    a, b = tmp_path / "a", tmp_path / "b"
    for h in (a, b):
        h.mkdir()
        (h / "config.yaml").write_text(f"store_url: {shared.as_uri()}\nlink_mode: hardlink\n")
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
        warmpull.warm_pull(
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
    for key, value in warmpull.DEFAULTS.items():
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
