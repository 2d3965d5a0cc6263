"""A pull through the server: each file streams into a partial file next to its target, is
checked against its SHA-256, then renamed into place. An interrupted pull leaves the partial
file; the next pull asks only for the rest (HTTP Range) and hashes the part it already has.
The bytes are hashed and written on a second thread while the next ones arrive (``receive``).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from weightvault.client.http import Http
from weightvault.core.errors import CorruptObjectError
from weightvault.vault.pull import PlannedFile


def part_path(target: Path, sha256: str) -> Path:
    return target.parent / f".{target.name}.{sha256[:16]}.wv-part"


def fetch(http: Http, url: str, item: PlannedFile, progress: Callable[[int], None]) -> int:
    """Download one file into its verified partial file (resuming one left by an earlier pull);
    returns the bytes fetched over the network. ``fetch_all`` renames it into place."""
    entry, target = item.entry, item.target
    target.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(target, entry.sha256)
    h = hashlib.sha256()
    have = 0
    if part.exists():
        have = part.stat().st_size
        if have > entry.size:
            part.unlink()
            have = 0
        else:
            with open(part, "rb") as f:
                while block := f.read(8 << 20):
                    h.update(block)
            progress(have)
    fetched = 0
    if have < entry.size:
        headers = {"Range": f"bytes={have}-"} if have else None
        with open(part, "ab") as out:

            def restart_unless_partial(status: int) -> None:
                nonlocal h
                if have and status != 206:  # the server sent the whole file: start over
                    out.truncate(0)
                    h = hashlib.sha256()

            def consume(block: memoryview) -> None:  # on the receiving thread: overlaps the network
                out.write(block)
                h.update(block)
                progress(len(block))

            fetched = http.download(url, consume, headers, restart_unless_partial).size
            out.flush()
            os.fsync(out.fileno())
    elif not part.exists():
        part.touch()
    if h.hexdigest() != entry.sha256:
        part.unlink(missing_ok=True)
        raise CorruptObjectError(f"{entry.path}: downloaded bytes do not match its SHA-256; pull again")
    return fetched


def fetch_all(
    http: Http, items: list[tuple[str, PlannedFile]], workers: int, progress: Callable[[int], None]
) -> int:
    """Download (url, planned file) pairs, biggest first, ``workers`` at a time; only when every
    file is complete and verified are they renamed into place, so a failed pull places nothing
    (its verified or partial ``.wv-part`` files stay for the next pull to resume)."""
    ordered = sorted(items, key=lambda item: -item[1].entry.size)
    with ThreadPoolExecutor(workers, thread_name_prefix="wv-pull") as pool:
        futures = [pool.submit(fetch, http, url, p, progress) for url, p in ordered]
        fetched = sum(f.result() for f in futures)
    for _, p in ordered:
        os.replace(part_path(p.target, p.entry.sha256), p.target)
    return fetched
