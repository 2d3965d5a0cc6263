"""Shared fixtures: a fresh embedded vault and small model folders."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from weightvault.storage import oscaps
from weightvault.testing.postgres import PostgresCluster
from weightvault.testing.safetensors import safetensors_prefix
from weightvault.vault.vault import Vault

_db_numbers = itertools.count()


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key.startswith("WEIGHTVAULT_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("WEIGHTVAULT_HOME", str(tmp_path / "default-home"))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "os_paths: run each test twice: on this OS's native paths and with the Linux-only ones "
        "(O_DIRECT, fcntl, FICLONE) switched off, as on macOS",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.definition.get_closest_marker("os_paths") is not None:
        metafunc.parametrize("os_paths", ["native", "portable"], indirect=True)


@pytest.fixture(autouse=True)
def os_paths(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, _isolated_env: None) -> str:
    """``portable``: this process and the processes it starts run without the Linux-only paths."""
    mode: str = getattr(request, "param", "native")
    if mode == "portable":
        for name, value in oscaps.portable_values().items():
            monkeypatch.setattr(oscaps, name, value)
        monkeypatch.setenv(oscaps.PORTABLE_ENV, "1")
    return mode


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """One real PostgreSQL server for the session (Debian's package); each test gets its own database."""
    with PostgresCluster() as cluster:
        yield cluster


def new_postgres_database(request: pytest.FixtureRequest) -> str:
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    return cluster.create_database(f"wv_test_{os.getpid()}_{next(_db_numbers)}")


@pytest.fixture(params=["sqlite", "postgresql"])
def index_url(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str | None:
    """The index database of a test: the home's SQLite file (None), then a fresh PostgreSQL database,
    also named in ``WEIGHTVAULT_DATABASE_URL`` so the CLI processes a test runs use it too."""
    if request.param == "sqlite":
        return None
    url = new_postgres_database(request)
    monkeypatch.setenv("WEIGHTVAULT_DATABASE_URL", url)
    return url


@pytest.fixture
def vault(home: Path, index_url: str | None) -> Iterator[Vault]:
    v = Vault.open(home, database_url=index_url)
    yield v
    v.close()


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    """moto's server (S3, KMS) on a free loopback port, in this process, for one test module."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def write_random(path: Path, size: int, seed: int = 0) -> Path:
    """``size`` random bytes; a ``*.safetensors`` file gets a valid header (one U8 tensor) first,
    since a push refuses malformed safetensors files."""
    import random

    path.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    if path.name.endswith(".safetensors"):
        head = safetensors_prefix(size)
        path.write_bytes(head + rng.randbytes(size - len(head)))
    else:
        path.write_bytes(rng.randbytes(size))
    return path


def random_blobs(count: int, size: int) -> list[tuple[bytes, bytes]]:
    """``count`` random chunks of ``size`` bytes, each with its chunk id (no two alike)."""
    import os

    from weightvault.cas.hashing import chunk_id

    out = []
    for _ in range(count):
        data = os.urandom(size)
        out.append((chunk_id(data), data))
    return out


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A small model folder: two weight files, a config, a file in a subfolder."""
    src = tmp_path / "model"
    write_random(src / "model-00001-of-00002.safetensors", 3_000_000, seed=1)
    write_random(src / "model-00002-of-00002.safetensors", 2_500_000, seed=2)
    (src / "config.json").write_text('{"hidden_size": 64}')
    write_random(src / "tokenizer" / "vocab.bin", 40_000, seed=3)
    return src


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def run_cli(
    home: Path, *args: str, cmd: str = "weightvault", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the installed console script (or the module) as a user would, with a fixed home."""
    exe = Path(sys.executable).parent / cmd
    argv = [str(exe)] if exe.exists() else [sys.executable, "-m", "weightvault.cli.app"]
    return subprocess.run(
        [*argv, "--home", str(home), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )
