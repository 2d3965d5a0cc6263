"""A pull through the server: each file streams into a partial file next to its target, is
checked against its SHA-256, then renamed into place. An interrupted pull leaves the partial
file; the next pull asks only for the rest (HTTP Range) and hashes the part it already has.
The bytes are hashed and written on a second thread while the next ones arrive (``receive``).

Since this client checks every file's SHA-256 against the version's manifest (which the server
reads checked from the store), it asks the server to skip its own per-chunk check
(``core.headers.CLIENT_VERIFIES``): the check moves here, it is not dropped. Bytes that fail the
SHA-256 are discarded (the partial file too: nothing unchecked is kept for a resume) and the file
is fetched once more with the server checking every chunk, which either serves good bytes (from
a good replica copy) or answers the corrupt-object error.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from weightvault.client.http import Http
from weightvault.core.errors import BackendUnavailableError, CorruptObjectError, IntegrityError
from weightvault.core.headers import CLIENT_VERIFIES, CLIENT_VERIFIES_SHA256
from weightvault.vault.pull import PlannedFile


def part_path(target: Path, sha256: str) -> Path:
    return target.parent / f".{target.name}.{sha256[:16]}.wv-part"


class _Mismatch(Exception):
    """The received file does not hash to its SHA-256; its partial file is gone already."""

    def __init__(self, fetched: int) -> None:
        self.fetched = fetched


def fetch(http: Http, url: str, item: PlannedFile, progress: Callable[[int], None]) -> int:
    """Download one file into its verified partial file (resuming one left by an earlier pull);
    returns the bytes fetched over the network. ``fetch_all`` renames it into place.

    First with the server's per-chunk check skipped (this client checks the SHA-256); on a
    mismatch once more with it (``_fetch_checked``)."""
    try:
        return _fetch_once(http, url, item, progress, client_verifies=True)
    except _Mismatch as bad:
        return bad.fetched + _fetch_checked(http, url, item, progress)
    except IntegrityError:  # the server could not read it even unchecked: it answers the same, checked
        return _fetch_checked(http, url, item, progress)


def _fetch_checked(http: Http, url: str, item: PlannedFile, progress: Callable[[int], None]) -> int:
    """The file again, every chunk checked by the server. A body cut short is resumed at once
    while each attempt brings bytes (the server cuts a body at a chunk it finds corrupt and,
    asked from there, answers the corrupt-object error); on that error or a mismatch nothing of
    the file is left behind."""
    part = part_path(item.target, item.entry.sha256)
    fetched = 0
    try:
        while True:
            before = part.stat().st_size if part.exists() else 0
            try:
                return fetched + _fetch_once(http, url, item, progress, client_verifies=False)
            except BackendUnavailableError:
                now = part.stat().st_size if part.exists() else 0
                if now <= before:
                    raise  # no progress: a real outage; the checked part stays for a later resume
                fetched += now - before
    except _Mismatch:
        raise CorruptObjectError(
            f"{item.entry.path}: the server's checked bytes do not match its SHA-256 either; "
            "run verify on the server"
        ) from None
    except IntegrityError:
        part.unlink(missing_ok=True)  # no good copy: nothing of this file stays
        raise


def _fetch_once(
    http: Http, url: str, item: PlannedFile, progress: Callable[[int], None], *, client_verifies: bool
) -> int:
    entry, target = item.entry, item.target
    target.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(target, entry.sha256)
    h = hashlib.sha256()
    have = 0
    counted = 0  # bytes reported to ``progress`` for this file, taken back on a mismatch
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
            counted = have
    fetched = 0
    if have < entry.size:
        headers = {"Range": f"bytes={have}-"} if have else {}
        if client_verifies:
            headers[CLIENT_VERIFIES] = CLIENT_VERIFIES_SHA256
        with open(part, "ab") as out:

            def restart_unless_partial(status: int) -> None:
                nonlocal h, counted
                if have and status != 206:  # the server sent the whole file: start over
                    out.truncate(0)
                    h = hashlib.sha256()
                    progress(-have)
                    counted -= have

            def consume(block: memoryview) -> None:  # on the receiving thread: overlaps the network
                nonlocal counted
                out.write(block)
                h.update(block)
                progress(len(block))
                counted += len(block)

            fetched = http.download(url, consume, headers, restart_unless_partial).size
            out.flush()
            os.fsync(out.fileno())
    elif not part.exists():
        part.touch()
    if h.hexdigest() != entry.sha256:
        part.unlink(missing_ok=True)
        progress(-counted)
        raise _Mismatch(fetched)
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
