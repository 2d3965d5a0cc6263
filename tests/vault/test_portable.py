"""Nothing Linux-only is needed: the vault imports and works where ``fcntl`` and ``os.O_DIRECT``
do not exist, and every Linux-only path has a fallback that the portable mode exercises."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from weightvault.core.errors import ConfigError
from weightvault.storage import oscaps
from weightvault.storage.direct_io import DirectWriter
from weightvault.vault.vault import Vault

from ..conftest import tree_bytes

_WITHOUT_LINUX = textwrap.dedent(
    """
    import os, sys
    sys.modules["fcntl"] = None      # import fcntl now raises ImportError, as on Windows
    del os.O_DIRECT                  # as on macOS
    from weightvault.storage import oscaps
    from weightvault.storage.direct_io import DirectWriter
    from weightvault.vault.vault import Vault
    assert oscaps.fcntl is None and oscaps.O_DIRECT == 0 and oscaps.FICLONE is None
    home, src, out = sys.argv[1:4]
    with Vault.open(home, cache_fill="always") as v:  # through the cache: O_DIRECT and clone paths
        v.push("m", src)
        cold = v.pull("m", out + "/a")
        warm = v.pull("m", out + "/b")
        assert v.verify(read_data=True).ok
        print(sorted(cold.placement.items()), sorted(warm.placement.items()), warm.bytes_from_cache)
    """
)


def test_the_vault_runs_where_fcntl_and_o_direct_do_not_exist(model_dir: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != oscaps.PORTABLE_ENV}
    run = subprocess.run(
        [sys.executable, "-c", _WITHOUT_LINUX, str(tmp_path / "home"), str(model_dir), str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    total = sum(p.stat().st_size for p in model_dir.rglob("*") if p.is_file())
    assert run.stdout.split() == ["[('copy',", "4)]", "[('copy',", "4)]", str(total)]
    assert tree_bytes(tmp_path / "a") == tree_bytes(tmp_path / "b") == tree_bytes(model_dir)


@pytest.mark.os_paths
def test_direct_writer_writes_the_same_bytes_either_way(tmp_path: Path, os_paths: str) -> None:
    data = os.urandom((8 << 20) * 2 + 12345)  # two whole buffers and an unaligned tail
    with DirectWriter(tmp_path / "f", 0o600) as out:
        out.write(data[:100])
        out.write(data[100:])
    assert (tmp_path / "f").read_bytes() == data
    assert stat.S_IMODE((tmp_path / "f").stat().st_mode) == 0o600
    if os_paths == "portable":
        assert not out.direct
    elif _takes_o_direct(tmp_path):
        assert out.direct


def _takes_o_direct(folder: Path) -> bool:
    """ext4, XFS and btrfs do; tmpfs and macOS do not."""
    flag = getattr(os, "O_DIRECT", 0)
    if not flag:
        return False
    try:
        os.close(os.open(folder / "probe", os.O_WRONLY | os.O_CREAT | flag, 0o600))
        return True
    except OSError:
        return False


def test_the_portable_switch_reaches_processes_the_tests_start() -> None:
    code = "from weightvault.storage import oscaps; print(oscaps.O_DIRECT, oscaps.fcntl, oscaps.FICLONE)"
    env = {**os.environ, oscaps.PORTABLE_ENV: "1"}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert run.stdout.split() == ["0", "None", "None"]


_LAZY_SYNCFS = textwrap.dedent(
    """
    import os, sys
    from weightvault.storage import oscaps
    print("ctypes" in sys.modules)
    fn = oscaps.syncfs
    print("ctypes" in sys.modules, "ctypes.util" in sys.modules, fn is oscaps.syncfs)
    fd = os.open(sys.argv[1], os.O_RDONLY)
    print(None if fn is None else fn(fd), oscaps.clonefile)
    """
)


def test_the_c_library_is_loaded_on_first_use_only(tmp_path: Path) -> None:
    """``syncfs`` is found through ctypes when first read (a command that syncs no batch pays
    nothing for it), then is an ordinary attribute; the portable mode sets it without ctypes."""
    env = {k: v for k, v in os.environ.items() if k != oscaps.PORTABLE_ENV}
    argv = [sys.executable, "-c", _LAZY_SYNCFS, str(tmp_path)]
    run = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ["False", "True False True", "0 None"]  # syncfs(2) returned 0
    env[oscaps.PORTABLE_ENV] = "1"
    portable = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
    assert portable.stdout.splitlines() == ["False", "False False True", "None None"]
    with pytest.raises(AttributeError):
        oscaps.no_such_capability  # noqa: B018


def test_native_windows_is_refused_at_the_start_with_one_clear_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(oscaps, "WINDOWS", True)
    with pytest.raises(ConfigError, match="WSL 2"):
        Vault.open(tmp_path / "home")
    assert not (tmp_path / "home").exists()


def test_linux_only_names_appear_only_behind_oscaps() -> None:
    """The import test above proves today's code; this keeps new code from referencing them directly."""
    import re

    import weightvault

    root = Path(weightvault.__file__).parent
    allowed = {root / "storage" / "oscaps.py", root / "storage" / "clone.py"}
    pattern = re.compile(r"^\s*(import fcntl|from fcntl)|os\.O_DIRECT\b|[\"']/proc/|fcntl\.FICLONE", re.M)
    offenders = [
        str(p.relative_to(root))
        for p in root.rglob("*.py")
        if p not in allowed and pattern.search(p.read_text())
    ]
    assert offenders == []
