"""Two server processes on one PostgreSQL index and one store: concurrent pushes of versions of
the same model, an alias moved while pulls run, gc during pushes. Nothing is lost or corrupted."""

from __future__ import annotations

import contextlib
import random
import threading
from pathlib import Path

import pytest

from weightvault import Vault
from weightvault.core.errors import ConcurrentModificationError
from weightvault.testing.server import ServerProcess

from ..conftest import new_postgres_database, tree_bytes


def _variant(root: Path, n: int) -> Path:
    """A model folder sharing most bytes with the others; file b.bin differs per variant."""
    src = root / f"src{n}"
    src.mkdir(parents=True)
    rng = random.Random(1)
    (src / "a.bin").write_bytes(rng.randbytes(3_000_000))
    (src / "b.bin").write_bytes(random.Random(100 + n).randbytes(1_500_000))
    (src / "config.json").write_text(f'{{"variant": {n}}}')
    return src


def test_two_servers_one_postgres_one_store(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    url = new_postgres_database(request)
    home = tmp_path / "home"
    with Vault.open(home, database_url=url) as v:
        admin = v.access.create_token("root", "admin", admin=True).token
    # gc keeps unreferenced data for its grace period (default 1 h): that is what makes data a
    # push has sent but not yet committed safe from a gc running at the same time
    env = {"WEIGHTVAULT_DATABASE_URL": url}
    sources = {n: _variant(tmp_path, n) for n in range(7)}
    with ServerProcess(home, env=env) as a, ServerProcess(home, env=env) as b:
        servers = [a.url, b.url]
        with Vault.open(a.url, token=admin) as first:
            first.push("shared", sources[0], version="v0")
            first.push("shared", sources[6], version="v6")
            first.set_alias("shared", "prod", "v0")
        errors: list[BaseException] = []
        pulled: list[tuple[str, Path]] = []

        def guarded(fn: object) -> threading.Thread:
            def run() -> None:
                try:
                    fn()  # type: ignore[operator]
                except BaseException as exc:
                    errors.append(exc)

            return threading.Thread(target=run)

        def pusher(k: int) -> None:
            with Vault.open(servers[k % 2], token=admin) as v:
                for n in (1 + k, 4 + k):
                    if n < 6:
                        v.push("shared", sources[n], version=f"v{n}")

        def mover() -> None:
            with Vault.open(b.url, token=admin) as v:
                for i in range(8):
                    v.set_alias("shared", "prod", "v0" if i % 2 else "v6")

        def puller(k: int) -> None:
            with Vault.open(servers[k % 2], token=admin) as v:
                for i in range(4):
                    dest = tmp_path / f"pull-{k}-{i}"
                    result = v.pull("shared@prod", dest)
                    pulled.append((result.version.label, dest))

        def collector() -> None:
            with Vault.open(a.url, token=admin) as v:
                for _ in range(4):
                    with contextlib.suppress(ConcurrentModificationError):
                        v.gc()  # a gc that meets a push may give way; it must never break one

        threads = [guarded(lambda k=k: pusher(k)) for k in range(3)]
        threads += [guarded(mover), guarded(collector)]
        threads += [guarded(lambda k=k: puller(k)) for k in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=600)
        assert not errors, errors
        assert all(not t.is_alive() for t in threads)
        assert {label for label, _ in pulled} <= {"v0", "v6"} and len(pulled) == 8
        for label, dest in pulled:  # every pull during the moves got one whole, verified version
            assert tree_bytes(dest) == tree_bytes(sources[int(label[1:])])
        for url_ in servers:
            with Vault.open(url_, token=admin) as v:
                assert sorted(x.label for x in v.list_versions("shared")) == [f"v{n}" for n in range(7)]
        with Vault.open(b.url, token=admin) as v:
            for n in range(7):
                v.pull(f"shared@v{n}", tmp_path / f"final{n}")
                assert tree_bytes(tmp_path / f"final{n}") == tree_bytes(sources[n])
            v.gc()
            assert v.verify(read_data=True).ok
