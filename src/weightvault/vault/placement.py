"""How a pull places a cached file in its destination: clone, hardlink or copy (``link_mode``).

- ``reflink``: a copy-on-write clone (XFS with reflink, btrfs, APFS). An independent, writable
  file that shares blocks with the cache until written: as cheap as a hardlink, as safe as a copy.
- ``hardlink``: the cache's own inode, read-only. Microseconds and no space, but every folder
  pulled from one entry is the same file: a ``chmod u+w`` and an edit (or root, or a tool that
  rewrites in place) changes the other folders too.
- ``copy``: an independent, writable file of its own blocks.
- ``auto`` (default): a clone where the filesystem can; else a copy when the cache and the
  destination are on different filesystems (a hardlink cannot cross); else ``link_fallback``,
  ``copy`` by default: people expect a pulled folder to be theirs, files they can edit without
  touching anything else, as after a ``git clone``; speed that breaks that is opt-in
  (``link_fallback: hardlink``).

``reflink`` and ``hardlink`` are promises: where they cannot be kept the pull fails before it
writes anything, rather than silently doing something else.
"""

from __future__ import annotations

import errno
import os
import threading
from collections import Counter
from pathlib import Path
from typing import Final, Literal, get_args

from weightvault.core.errors import ConfigError, InvalidInputError
from weightvault.storage.clone import CloneUnsupportedError, clone_file, clone_supported
from weightvault.storage.oserror import os_error
from weightvault.vault.cache import FileCache

LinkMode = Literal["auto", "reflink", "hardlink", "copy"]
LinkFallback = Literal["copy", "hardlink"]
LINK_MODES: Final[tuple[str, ...]] = get_args(LinkMode)
#: how a file got to its destination: one of the link methods, or written from the store
#: straight into the destination (no cache, or a file larger than the cache).
Method = Literal["reflink", "hardlink", "copy", "written"]

_NO_LINK = frozenset({errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP})


def check_link_mode(mode: str) -> LinkMode:
    if mode not in LINK_MODES:
        raise InvalidInputError(f"unknown link mode {mode!r}: use one of {', '.join(LINK_MODES)}")
    return mode  # type: ignore[return-value]


def _existing(path: Path) -> Path:
    """``path`` or its nearest existing ancestor: the filesystem a new file there lands on."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


class Placer:
    """Places the cache's files at temporary names in one destination; counts how."""

    def __init__(
        self,
        mode: str,
        fallback: LinkFallback,
        cache: FileCache | None,
        dest: Path,
        *,
        private: bool = False,
    ) -> None:
        self.mode = check_link_mode(mode)
        self.fallback = fallback
        self.cache = cache
        self.dest = dest
        self.private = private
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        here = _existing(dest)
        self.same_filesystem = cache is not None and os.stat(cache.root).st_dev == os.stat(here).st_dev
        #: None: not tried yet; False: this pair of filesystems cannot clone (stop trying)
        self._clones: bool | None = None if clone_supported() else False

    def check(self) -> None:
        """Refuse, before anything is written, a mode this cache and destination cannot honour."""
        if self.cache is None:
            return
        if self.mode == "hardlink" and not self.same_filesystem:
            raise ConfigError(
                f"link mode 'hardlink': the cache ({self.cache.root}) and {self.dest} are on "
                "different filesystems; use --link-mode copy or auto"
            )
        if self.mode == "reflink" and not self._probe_clone():
            raise ConfigError(
                f"link mode 'reflink': cannot clone from the cache ({self.cache.root}) to {self.dest} "
                "(needs one filesystem with copy-on-write clones: XFS with reflink, btrfs, APFS); "
                "use --link-mode auto"
            )

    def _probe_clone(self) -> bool:
        """Clone a small temp file from the cache's filesystem into the destination's."""
        assert self.cache is not None
        if self._clones is not None:  # known already: a clone was made, or cannot be
            return self._clones
        source = self.cache.temp_file(self.private)
        target = _existing(self.dest) / f".wv-probe-{os.urandom(6).hex()}"
        try:
            source.write_bytes(b"\0" * 4096)
            clone_file(source, target)
            self._clones = True
        except CloneUnsupportedError:
            self._clones = False
        except OSError as exc:
            raise os_error(exc, f"trying a clone into {self.dest}") from exc
        finally:
            source.unlink(missing_ok=True)
            target.unlink(missing_ok=True)
        return self._clones

    def copies(self) -> bool:
        """Whether placing a cached file here copies its bytes (no clone, no hardlink): a pull
        then writes the destination in the same pass as the cache entry instead of reading the
        entry back (``pull``). Probes a clone once, as ``place`` would."""
        if self.cache is None:
            return False
        if self.mode == "copy":
            return True
        if self.mode != "auto" or (self.same_filesystem and self.fallback == "hardlink"):
            return False
        return not self._probe_clone()

    def place(self, source: Path, target: Path) -> Method:
        """Put a copy of cached ``source`` at ``target`` (a temp name that does not exist yet)."""
        method = self._place(source, target)
        self.note(method)
        return method

    def note(self, method: Method) -> None:
        with self._lock:
            self.counts[method] += 1

    def _place(self, source: Path, target: Path) -> Method:
        if self.mode in ("auto", "reflink") and self._clones is not False:
            try:
                clone_file(source, target)
                self._clones = True
                return "reflink"
            except CloneUnsupportedError as exc:
                if self.mode == "reflink":
                    msg = f"link mode 'reflink': cannot clone {source} ({exc.strerror})"
                    raise ConfigError(msg) from None
                self._clones = False
            except OSError as exc:
                raise os_error(exc, f"cloning to {target}") from exc
        if self.mode == "hardlink" or (
            self.mode == "auto" and self.same_filesystem and self.fallback == "hardlink"
        ):
            try:
                os.link(source, target)
                return "hardlink"
            except OSError as exc:
                if exc.errno not in _NO_LINK:
                    raise os_error(exc, f"linking {target}") from exc
                if self.mode == "hardlink":
                    msg = f"link mode 'hardlink': cannot link {source} ({exc.strerror})"
                    raise ConfigError(msg) from None
        import shutil  # only a copy needs it (it loads the compression modules)

        try:
            shutil.copyfile(source, target)
        except OSError as exc:
            target.unlink(missing_ok=True)
            raise os_error(exc, f"copying to {target}") from exc
        return "copy"
