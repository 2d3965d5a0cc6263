"""Recipe objects of a push on a remote store: the "is it there already?" checks are requests,
so they run in flight together, and an object already stored is not written again."""

from __future__ import annotations

import threading

from weightvault.core import layout
from weightvault.storage.memory import MemoryBackend
from weightvault.vault.store import Store


class _Remote(MemoryBackend):
    """No ``put_many`` (like a cloud store); the first ``parties`` existence checks pass only
    when that many are in flight at once; every put is counted."""

    def __init__(self, parties: int) -> None:
        super().__init__("recipes-remote")
        self.barrier = threading.Barrier(parties, timeout=30)
        self.checks = 0
        self.puts: list[str] = []
        self._count = threading.Lock()

    def exists(self, key: str) -> bool:
        if key.startswith(layout.RECIPES):
            with self._count:
                self.checks += 1
                n = self.checks
            if n <= self.barrier.parties:
                self.barrier.wait()
        return super().exists(key)

    def put(self, key: str, data: bytes | bytearray | memoryview, *, if_absent: bool = False) -> None:
        if key.startswith(layout.RECIPES):
            self.puts.append(key)
        super().put(key, data, if_absent=if_absent)


def test_existence_checks_run_together_and_stored_recipes_are_not_rewritten() -> None:
    backend = _Remote(parties=4)
    store = Store(backend)
    names = [f"{i:064x}" for i in range(1, 21)]
    MemoryBackend.put(backend, layout.recipe_key(names[0]), b"already there")
    store.put_recipe_objects({n: f"recipe {n}".encode() for n in names})
    # the barrier broke (BrokenBarrierError) unless 4 checks were in flight together
    assert backend.checks == len(names)
    assert sorted(backend.puts) == sorted(layout.recipe_key(n) for n in names[1:])
    assert backend.get(layout.recipe_key(names[0])) == b"already there"
    for n in names[1:]:
        assert store.get_recipe_object(n) == f"recipe {n}".encode()
