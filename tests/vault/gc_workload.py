"""Workloads for the online-gc tests, run in threads or in child processes.

``push_loop``: each round deletes the previous version and pushes a new one made mostly of the
deleted version's files, so every push deduplicates against data a gc is condemning.
``gc_loop``: gc with no grace period, again and again, until told to stop.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Any

from weightvault.core.errors import ConcurrentModificationError
from weightvault.vault.vault import Vault

PART = 1 << 20


def version_source(root: Path, i: int, tag: str) -> Path:
    src = root / f"{tag}-src-{i}"
    src.mkdir(parents=True, exist_ok=True)
    for j in range(i, i + 3):  # three parts; two of them were in the previous version
        (src / f"part-{j}.bin").write_bytes(random.Random(f"{tag}{j}").randbytes(PART))
    (src / "config.json").write_text('{"same": "in every version"}')
    return src


def push_loop(vault: Vault, root: Path, rounds: int, tag: str) -> list[str]:
    """Returns the labels pushed; each version is verified with its data right after its push."""
    labels = []
    for i in range(rounds):
        if labels:
            vault.delete(f"m-{tag}@{labels[-1]}")
        label = f"v{i}"
        vault.push(f"m-{tag}", version_source(root, i, tag), version=label)
        report = vault.verify(f"m-{tag}@{label}", read_data=True)
        assert report.ok, report.problems
        labels.append(label)
    return labels


def gc_loop(vault: Vault, stop: Any) -> tuple[int, int]:
    """(gc runs completed, runs refused because another gc held the store)."""
    done = refused = 0
    while not stop():
        try:
            vault.gc(grace_seconds=0)
            done += 1
        except ConcurrentModificationError:
            refused += 1
    return done, refused


if __name__ == "__main__":  # python gc_workload.py push|gc HOME STORE_URL ROOT ARG
    what, home, url, root, arg = sys.argv[1:6]
    with Vault.open(home, store_url=url, pack_size_mb=1, cache_enabled=False) as v:
        if what == "push":
            print(",".join(push_loop(v, Path(root), int(arg), "p")))
        else:
            stop_file = Path(arg)
            print(gc_loop(v, stop_file.exists))
