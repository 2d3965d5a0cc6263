"""Shared-store benchmark: what following the store costs, and what gc + repack reclaims.

1. **Refresh with 10,000 versions** (``--versions``): a store holding that many versions of one
   model (written through the store layer: manifest, ref and journal entry per version, as a
   push writes them; the data is one small shared file). Measured on a second home: the first
   open (a full scan: no cursor yet), a refresh when nothing changed, and a refresh after one
   more push from the first home; each as wall time and the number of store requests. On a local
   folder, and with ``--s3`` also on moto's S3 server on loopback.
2. **gc + repack of half a 2 GiB vault** (``--gib``): one push of 16 files (128 MiB each at 2 GiB)
   whose chunks the two push workers interleave into shared packs, then a second version with
   every other file (all deduplicated), then ``rm`` of the first: half the data is dead and
   sits in packs that are about half live. ``gc --dry-run`` at several repack thresholds shows
   the trade (bytes freed vs live bytes rewritten); then a real ``gc --grace 0`` at the default.

Run: ``.venv/bin/python bench/bench_shared_store.py [--versions N] [--gib G] [--s3]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from weightvault.core.manifest import FileEntry, Manifest
from weightvault.storage.backend import Backend, ObjectInfo
from weightvault.vault.config import Settings, load_settings
from weightvault.vault.journal import REF
from weightvault.vault.vault import Vault

REPO = Path(__file__).resolve().parents[1]
MiB = 1 << 20
DEFAULT_THRESHOLD = Settings.model_fields["gc_repack_threshold"].default


class Counting:
    """A backend that counts requests (every call of the Backend protocol that reaches the store)."""

    def __init__(self, inner: Backend) -> None:
        self.inner, self.url, self.calls = inner, inner.url, 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name in ("put", "put_file", "get", "get_range", "stat", "exists", "delete"):

            def counted(*a: Any, **k: Any) -> Any:
                self.calls += 1
                return attr(*a, **k)

            return counted
        return attr

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        self.calls += 1  # one listing (a cloud pages it per 1000 keys)
        return self.inner.list(prefix)


def fill(vault: Vault, versions: int) -> None:
    src = Path(tempfile.mkdtemp()) / "src"
    src.mkdir()
    (src / "w.bin").write_bytes(os.urandom(4096))
    first = vault.push("m", src, version="v0")
    entry = first.version
    manifest0 = vault.store.get_manifest(entry.commit)
    for i in range(1, versions):
        manifest = Manifest(
            model="m",
            files=tuple(FileEntry(f.path, f.size, f.sha256) for f in manifest0.files),
            parent=None,
            message=f"version {i}",
        )
        commit, _ = vault.store.put_manifest(manifest)
        vault.store.create_version_ref("m", f"v{i}", commit, datetime.now(UTC))
        vault.journal_change(REF, model="m", ref="version", name=f"v{i}")
        if i % 1000 == 0:
            print(f"  … {i} versions", file=sys.stderr, flush=True)


def timed(fn: Any) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def refresh_bench(name: str, make_backend: Any, root: Path, versions: int) -> list[str]:
    writer = Vault(load_settings(root / "writer"), backend=make_backend())
    t_fill, _ = timed(lambda: fill(writer, versions))
    counting = Counting(make_backend())
    reader = Vault(load_settings(root / "reader"), backend=counting)
    counting.calls = 0
    t_scan, rep = timed(reader.refresh)
    scan_calls = counting.calls
    assert rep.full_scan and len(reader.index.list_versions("m")) == versions
    idle = []
    for _ in range(20):
        counting.calls = 0
        t, rep = timed(reader.refresh)
        idle.append(t)
        assert rep.applied == 0
    idle_calls = counting.calls
    src = root / "one-more"
    src.mkdir()
    (src / "w.bin").write_bytes(os.urandom(1 * MiB))
    writer.push("m", src, version="new")
    counting.calls = 0
    t_one, rep = timed(reader.refresh)
    one_calls, applied = counting.calls, rep.applied
    assert reader.resolve("m@new").label == "new"
    writer.close()
    reader.close()
    return [
        f"| {name} | fill {versions} versions | {t_fill:.1f} s | |",
        f"| {name} | first open of a new home (full scan) | {t_scan:.2f} s | {scan_calls} |",
        f"| {name} | refresh, nothing changed (median of 20) | {statistics.median(idle) * 1000:.2f} ms | "
        f"{idle_calls} |",
        f"| {name} | refresh after one push ({applied} journal entries) | {t_one * 1000:.1f} ms | "
        f"{one_calls} |",
    ]


def gc_bench(root: Path, gib: float, keep: set[int], what: str) -> list[str]:
    n_files = 16
    size = int(gib * (1 << 30)) // n_files
    both, half = root / "both", root / "half"
    both.mkdir(parents=True)
    half.mkdir(parents=True)
    for i in range(n_files):
        data = os.urandom(size)
        (both / f"f{i:02d}.bin").write_bytes(data)
        if i in keep:
            (half / f"f{i:02d}.bin").write_bytes(data)
    for d in (both, half):
        (d / "config.json").write_text('{"shared": true}')
    rows = [f"### {what}: files kept {sorted(keep)}", ""]
    with Vault.open(root / "home", cache_enabled=False) as v:
        t_push, _ = timed(lambda: v.push("m", both, version="both"))
        v.push("m", half, version="half")
        store_before = sum(i.size for i in v.primary.list("packs/"))
        dead = (n_files - len(keep)) * size
        v.delete("m@both")
        rows.append(
            f"store {store_before / MiB:.0f} MiB in packs; {dead / MiB:.0f} MiB of it deleted "
            f"(push {t_push:.1f} s)"
        )
        rows.append("")
        rows.append(
            "| repack threshold | would free (net) | share of deleted | live bytes rewritten "
            "| packs repacked |"
        )
        rows.append("| --- | --- | --- | --- | --- |")
        for threshold in (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0):
            v.settings.gc_repack_threshold = threshold
            r = v.gc(grace_seconds=0, dry_run=True)
            rows.append(
                f"| {threshold:.1f} | {r.bytes_freed / MiB:.0f} MiB | {r.bytes_freed / dead:.1%} | "
                f"{r.bytes_rewritten / MiB:.0f} MiB | {r.packs_repacked} |"
            )
        v.settings.gc_repack_threshold = DEFAULT_THRESHOLD
        t_gc, r = timed(lambda: v.gc(grace_seconds=0))
        store_after = sum(i.size for i in v.primary.list("packs/"))
        t_verify, ok = timed(lambda: v.verify(read_data=True).ok)
        rows.append("")
        rows.append(
            f"gc --grace 0 at the default threshold {DEFAULT_THRESHOLD}: {t_gc:.1f} s; "
            f"packs {store_before / MiB:.0f} → "
            f"{store_after / MiB:.0f} MiB, reclaimed {(store_before - store_after) / MiB:.0f} MiB = "
            f"{(store_before - store_after) / dead:.1%} of the deleted half; "
            f"{r.bytes_rewritten / MiB:.0f} MiB rewritten, {r.packs_repacked} packs repacked; "
            f"verify --read-data afterwards {t_verify:.1f} s, ok={ok}"
        )
    rows.append("")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--versions", type=int, default=10_000)
    ap.add_argument("--gib", type=float, default=2.0)
    ap.add_argument("--s3", action="store_true")
    ap.add_argument("--skip-gc", action="store_true")
    ap.add_argument("--skip-refresh", action="store_true")
    args = ap.parse_args()
    print(f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(
        dir=REPO / ".bench-tmp" if (REPO / ".bench-tmp").is_dir() else None
    ) as tmp:
        root = Path(tmp)
        if not args.skip_refresh:
            from weightvault.storage.local import LocalBackend

            print("| store | what | time | requests |\n| --- | --- | --- | --- |")
            for line in refresh_bench(
                "local folder", lambda: LocalBackend(root / "store"), root / "local", args.versions
            ):
                print(line, flush=True)
            if args.s3:
                sys.path.insert(0, str(REPO / "tests" / "storage"))
                import servers

                from weightvault.storage.factory import open_backend

                server = servers.moto_server().start()
                try:
                    opts = {
                        "endpoint_url": server.endpoint,
                        "region": "us-east-1",
                        "access_key_id": "t",
                        "secret_access_key": "t",
                    }
                    open_backend("s3://bench/x", create=True, **opts).close()
                    for line in refresh_bench(
                        "S3 (moto)",
                        lambda: open_backend("s3://bench/store", **opts),
                        root / "s3",
                        args.versions,
                    ):
                        print(line, flush=True)
                finally:
                    server.close()
        print(f"# load {os.getloadavg()[0]:.2f}")
        if not args.skip_gc:
            import random

            scenarios = [
                ("every other file deleted (every pack about half live)", set(range(0, 16, 2))),
                (
                    "a random half deleted (packs 0, 1/2 or fully live)",
                    set(random.Random(7).sample(range(16), 8)),
                ),
            ]
            for i, (what, keep) in enumerate(scenarios):
                for line in gc_bench(root / f"gc{i}", args.gib, keep, what):
                    print(line, flush=True)
        print(f"# done {datetime.now(UTC):%H:%M} UTC, load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
