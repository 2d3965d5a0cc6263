"""What the CLI prints without a console: sizes, durations and JSON.

Kept apart from ``cli.output`` (Rich's console) so that a command printing only JSON starts
without importing Rich; ``cli.output`` re-exports these names.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def duration(seconds: float) -> str:
    """``3600`` -> ``1h``, ``90`` -> ``1m30s``: how long a grace period is, as a person reads it."""
    s = round(seconds)
    if s < 60:
        return f"{seconds:g}s"
    parts = [(s // 86400, "d"), (s % 86400 // 3600, "h"), (s % 3600 // 60, "m"), (s % 60, "s")]
    return "".join(f"{n}{unit}" for n, unit in parts if n)


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")
