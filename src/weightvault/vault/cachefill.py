"""Whether a pull adds the files it rebuilds to the local cache (``cache_fill``).

The cache exists to make a repeat pull cheap. Filling it costs nothing extra when the
destination shares the entry (a hardlink or a clone: one write either way), and it saves a
network transfer when the store is remote. But a store in a local folder that is placed by
copy (ext4's default) would have every byte written twice, the cache entry and the user's
own copy, and held twice on the same disk. What that buys is a cheaper repeat pull (a copy of
the entry instead of a rebuild from the packs already on this disk: ~1 CPU-s per GiB less,
bench/RESULTS.md), which only who pulls one version into many folders uses. So:

- ``auto`` (default): fill when the pull reads from a remote store (cloud or a server), or
  when the placement shares the entry (hardlink, clone); a local store placed by copy writes
  the destination only.
- ``always``: fill on every pull (many folders of one version, a folder store on a slow
  network filesystem).

``cache_enabled: false`` still means no cache at all. Entries already in the cache are used
whatever this says: the setting decides writes, never reads.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

from weightvault.vault.placement import Placer

CacheFill = Literal["auto", "always"]
CACHE_FILLS: Final[tuple[str, ...]] = get_args(CacheFill)


def fills_cache(setting: str, *, remote: bool, placer: Placer) -> bool:
    """Whether a pull that reads from a ``remote`` store and places through ``placer`` should
    add the files it rebuilds to the cache (``placer.cache`` is None: there is no cache)."""
    if placer.cache is None:
        return False
    if setting == "always" or remote:
        return True
    return not placer.copies()
