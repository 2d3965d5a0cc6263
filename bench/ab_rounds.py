"""The interleaved rounds of an A/B push benchmark (``push_ab.py``, ``encpush_ab.py``).

Every way runs once a round, in an order rotated per round so all see the same machine load,
each in a fresh home and cache under ``work``, with its own ``src`` on ``PYTHONPATH`` if it has
one (another revision's code).
"""

from __future__ import annotations

import os
import statistics
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_core import env_with, rmtree  # noqa: E402  (a sibling script, not a package)
from bench_table import Sample  # noqa: E402

How = TypeVar("How")


def interleaved(
    ways: Sequence[tuple[str, How, str | None]],
    rounds: int,
    work: Path,
    push: Callable[[How, Path, dict[str, str]], Sample],
) -> dict[str, list[Sample]]:
    """Each way's samples: ``push(how, home, env)`` per way and round, a line printed per push."""
    samples: dict[str, list[Sample]] = {name: [] for name, _, _ in ways}
    width = max(len(name) for name in samples) + 1
    for i in range(rounds):
        for name, how, src in [*ways[i % len(ways) :], *ways[: i % len(ways)]]:
            home = work / "home"
            rmtree(home)
            env = env_with(WEIGHTVAULT_CACHE_DIRECTORY=str(work / "cache"))
            if src:
                env["PYTHONPATH"] = src
            s = push(how, home, env)
            samples[name].append(s)
            timing = f"{s.durable:.3f} s (op {s.seconds:.3f} + sync {s.sync_seconds:.3f})"
            print(
                f"round {i} {name:{width}s} {timing}  CPU {s.cpu:.2f} s  load {os.getloadavg()[0]:.2f}",
                flush=True,
            )
            rmtree(home)
            rmtree(work / "cache")
    return samples


def medians(samples: dict[str, list[Sample]]) -> tuple[dict[str, float], dict[str, float]]:
    """Each way's median wall seconds (including the ``sync``) and median CPU seconds."""
    med = {k: statistics.median(s.durable for s in v) for k, v in samples.items()}
    cpu = {k: statistics.median(s.cpu for s in v) for k, v in samples.items()}
    return med, cpu
