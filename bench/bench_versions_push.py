"""An in-process push of a tiny plain model that already has many versions, before and after
``Store.shows_encryption`` became a fixed number of reads (issue 9).

"before" runs the previous check (list every ref of the model, read each one looking for a MAC)
in place of the current one, in the same loop and process, so both see the same load. Homes with
``--counts`` versions are made by real SDK pushes (as bench_table.py's versions setup) and kept in
``--out``; each timed push adds one version.

    .venv/bin/python bench/bench_versions_push.py --counts 1000,5000 --runs 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from weightvault.core import layout
from weightvault.core.errors import MissingObjectError
from weightvault.vault.store import Store
from weightvault.vault.vault import Vault

HERE = Path(__file__).resolve().parent


def scan_every_ref(self: Store, model: str, newest: str | None = None) -> bool:
    """The check as it was: one read per ref of the model."""
    for info in self.backend.list(layout.model_refs_prefix(model)):
        parsed = layout.parse_ref_key(info.key)
        if parsed is None or parsed[0] != model:
            continue
        try:
            body = json.loads(self.backend.get(info.key))
        except (MissingObjectError, ValueError):
            continue
        if isinstance(body, dict) and "mac" in body:
            return True
    return False


def write_version(src: Path, i: int) -> None:
    (src / "weights.bin").write_bytes(i.to_bytes(8, "little") * 64)


def versions_home(out: Path, count: int) -> tuple[Path, Path]:
    """A home whose model ``m`` has ``count`` versions (plus the timed pushes' ones); cached."""
    home, src = out / f"versions-push-{count}" / "home", out / f"versions-push-{count}" / "src"
    src.mkdir(parents=True, exist_ok=True)
    (src / "config.json").write_text('{"arch": "tiny"}')
    stamp = home.parent / ".count"
    have = int(stamp.read_text()) if stamp.exists() else 0
    if have < count:
        t0 = time.perf_counter()
        with Vault.open(home) as v:
            for i in range(have, count):
                write_version(src, i)
                v.push("m", src, version=f"v{i:06d}")
        stamp.write_text(str(count))
        print(f"  made {count - have} versions in {time.perf_counter() - t0:.0f} s", flush=True)
    return home, src


def timed_push(v: Vault, src: Path, n: int) -> tuple[float, float, int]:
    """Wall s, CPU s and ref reads of one push of a new version."""
    reads = 0
    real: Callable[[str], bytes] = v.store.backend.get

    def get(key: str) -> bytes:
        nonlocal reads
        reads += key.startswith(layout.REFS)
        return real(key)

    v.store.backend.get = get  # type: ignore[method-assign]
    write_version(src, n)
    try:
        w, c = time.perf_counter(), time.process_time()
        v.push("m", src, version=f"t{os.getpid()}x{n}")
        return time.perf_counter() - w, time.process_time() - c, reads
    finally:
        del v.store.backend.get


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--counts", default="1000,5000")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", type=Path, default=HERE / "out")
    args = ap.parse_args()
    current = Store.shows_encryption
    for count in (int(c) for c in args.counts.split(",")):
        home, src = versions_home(args.out, count)
        results: dict[str, list[tuple[float, float, int]]] = {"before": [], "after": []}
        with Vault.open(home) as v:
            serial = time.time_ns() // 1000
            for r in range(args.runs):
                for name in ("before", "after") if r % 2 == 0 else ("after", "before"):
                    Store.shows_encryption = scan_every_ref if name == "before" else current  # type: ignore[method-assign]
                    serial += 1
                    results[name].append(timed_push(v, src, serial))
            Store.shows_encryption = current  # type: ignore[method-assign]
        for name, runs in results.items():
            print(
                f"{count:>6} versions, {name:6}: median {statistics.median(r[0] for r in runs):.3f} s, "
                f"{statistics.median(r[1] for r in runs):.3f} CPU-s, {runs[0][2]} ref reads; "
                f"runs {' / '.join(f'{r[0]:.3f}' for r in runs)}; load {os.getloadavg()[0]:.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
