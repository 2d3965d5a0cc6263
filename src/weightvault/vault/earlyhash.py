"""SHA-256s of a push's large files, computed while the command line is still starting.

A CLI push spends about 0.45 CPU-s importing and opening the vault stack, on one core, before its
pipeline reads a byte; the whole-file SHA-256 (the largest per-byte cost of a push) needs none of
it. ``EarlyHashes`` hashes the source's large files (those the pipeline hashes as a task of their
own, ``push.SMALL_FILE``), largest first, on a thread started as soon as the line is read: hashlib
releases the GIL over each mapped window of a file, so it runs on the core the imports leave idle.
``PushPipeline.run`` then asks it for each large file (``take``), once its workers have chunked
every file: the thread goes on hashing meanwhile, as a third thread beside the two chunking ones
(which wait on their writes part of the time), and the workers hash what it has not started.

Nothing here weakens what a push guarantees about a file that changes under it:

* a digest counts only when the file's stat (device, inode, size, mtime, ctime) was the same
  before and after it was read here and is the very stat the push's scan took; the pipeline's own
  check that the file did not change while it was pushed follows as for any file;
* and only when the file's last change is in an earlier whole second than the moment this thread
  stat'ed it, the stat cache's "racily clean" rule (``statcache.trusted``): a file rewritten
  within the second of its stat could keep the same stat with other bytes, so it is hashed again.

Each file is claimed once: here when its hashing starts, or by the pipeline when it asks for a
file not started yet (it is then skipped here and the pipeline hashes it); a file in progress is
awaited, never hashed twice. Files the stat cache already vouches for are not read. This thread
never raises: a file it cannot read, or one that changed, is left to the pipeline, which reads it
and fails (or succeeds) exactly as it would have without it. ``close`` stops and joins it.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from weightvault.vault.source import SourceFile, ignored
from weightvault.vault.statcache import StatCache, trusted

#: ``push.SMALL_FILE``: larger files are hashed as a task of their own (a test keeps them equal)
LARGE = 8 << 20
#: entries a source may have for an early walk: a tree of many small files gains nothing here,
#: and walking it would hold the GIL the imports need
MAX_ENTRIES = 1000
#: ``filescan.WINDOW``: one GIL-free update per mapped window of the file
WINDOW = 32 << 20

_PENDING, _RUNNING, _DONE, _CLAIMED, _FAILED = range(5)
Stat = tuple[int, int, int, int, int]  # dev, inode, size, mtime_ns, ctime_ns


@dataclass(slots=True)
class _File:
    state: int
    digest: str = ""
    stat: Stat | None = None
    seen_ns: int = 0


def _stat_key(st: os.stat_result) -> Stat:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class EarlyHashes:
    """The large files of ``source`` hashed on a thread; ``take`` hands each to the pipeline.

    ``default_ignores``: as the push's (``source.DEFAULT_IGNORES``); ``stat_cache``: the home's
    stat cache, whose trusted files are not read here. Use as a context manager, or ``start`` and
    ``close``."""

    def __init__(
        self, source: Path | str, *, default_ignores: bool = True, stat_cache: Path | None = None
    ) -> None:
        self._source = source
        self._default_ignores = default_ignores
        self._stat_cache = stat_cache
        self._files: dict[Path, _File] = {}
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._over = False
        self._thread = threading.Thread(target=self._run, name="wv-early-hash", daemon=True)
        #: files this thread hashed to the end (for tests and measurements)
        self.hashed: list[Path] = []

    def start(self) -> EarlyHashes:
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop after the current read and wait for the thread: nothing keeps running."""
        self._stop.set()
        if self._thread.ident is not None:  # started
            self._thread.join()

    def wait(self) -> None:
        """Until the thread has nothing left to do (for tests and measurements)."""
        self._thread.join()

    def __enter__(self) -> EarlyHashes:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ---- the pipeline's side --------------------------------------------------------------

    def take(self, src: SourceFile) -> str | None:
        """The SHA-256 of ``src`` when it was hashed here over bytes its stat still describes;
        None when the caller must hash it itself (not hashed here, changed, or unreadable). A
        file not started yet is claimed for the caller, one in progress is awaited."""
        with self._cond:
            f = self._files.get(src.abspath)
            if f is None:
                if not self._over:  # not listed yet: the walk must not pick it up after this
                    self._files[src.abspath] = _File(_CLAIMED)
                return None
            if f.state == _PENDING:
                f.state = _CLAIMED
                return None
            while f.state == _RUNNING:
                self._cond.wait()
            if f.state != _DONE:
                return None
            digest, seen, at = f.digest, f.stat, f.seen_ns
        if seen != (src.dev, src.inode, src.size, src.mtime_ns, src.ctime_ns) or not trusted(src, at):
            return None
        return digest

    # ---- the thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            found = self._list()
            if self._stat_cache is not None and found:
                known = StatCache(self._stat_cache).known(found)
                if known is None:  # the cache cannot be read: it may vouch for any of them
                    return
                found = [s for s in found if s.abspath not in known]
            found.sort(key=lambda s: (-s.size, s.path))  # the pipeline's order
            with self._cond:
                for s in found:
                    self._files.setdefault(s.abspath, _File(_PENDING))
            for s in found:
                with self._cond:
                    if self._stop.is_set():
                        return
                    f = self._files[s.abspath]
                    if f.state != _PENDING:
                        continue
                    f.state = _RUNNING
                result = self._hash(s.abspath)
                with self._cond:
                    if result is None:
                        f.state = _FAILED
                    else:
                        f.digest, f.stat, f.seen_ns = result
                        f.state = _DONE
                        self.hashed.append(s.abspath)
                    self._cond.notify_all()
        except Exception:  # never this thread's error to report: the pipeline does every file
            pass
        finally:
            with self._cond:
                self._over = True
                for f in self._files.values():
                    if f.state == _RUNNING:
                        f.state = _FAILED
                self._cond.notify_all()

    def _list(self) -> list[SourceFile]:
        """The large regular files the push's scan would find (as far as ``MAX_ENTRIES`` go),
        keyed by the same absolute path; a symlinked file only when it resolves inside the
        source, a symlinked folder not at all (the pipeline hashes those)."""
        root = os.path.realpath(self._source)
        out: list[SourceFile] = []
        if os.path.isfile(root):
            self._add(out, os.path.basename(root), Path(root))
            return out
        seen = 0
        for dirpath, dirnames, filenames in os.walk(root):
            rel_dir = os.path.relpath(dirpath, root)
            prefix = "" if rel_dir == "." else rel_dir.replace(os.sep, "/") + "/"
            seen += len(dirnames) + len(filenames)
            if seen > MAX_ENTRIES or self._stop.is_set():
                break
            dirnames[:] = [
                d
                for d in dirnames
                if not (self._default_ignores and ignored(prefix + d))
                and not os.path.islink(os.path.join(dirpath, d))
            ]
            for name in filenames:
                rel = prefix + name
                if self._default_ignores and ignored(rel):
                    continue
                full = os.path.join(dirpath, name)
                if os.path.islink(full):
                    target = os.path.realpath(full)
                    if not target.startswith(root + os.sep):
                        continue
                    self._add(out, rel, Path(target))
                else:
                    self._add(out, rel, Path(full))
        return out

    def _add(self, out: list[SourceFile], rel: str, path: Path) -> None:
        try:
            st = os.stat(path)
        except OSError:
            return
        if stat.S_ISREG(st.st_mode) and st.st_size > LARGE:
            out.append(
                SourceFile(rel, path, st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns, st.st_dev)
            )

    def _hash(self, path: Path) -> tuple[str, Stat, int] | None:
        """(digest, stat, when stat'ed) of a file that did not change while it was read; None
        for one that did, could not be read, or when stopped."""
        seen_ns = time.time_ns()  # before the stat, as the stat cache takes it
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            before = _stat_key(os.fstat(fd))
            size = before[2]
            h = hashlib.sha256()
            for start in range(0, size, WINDOW):
                # one GIL-free update per window: in small reads this thread would wait for the
                # GIL the imports hold (up to the 5 ms switch interval) after every one of them
                if self._stop.is_set() or os.fstat(fd).st_size != size:
                    return None  # stopped, or truncated (mapping past the end would be a SIGBUS)
                with mmap.mmap(fd, min(WINDOW, size - start), offset=start, prot=mmap.PROT_READ) as m:
                    m.madvise(mmap.MADV_SEQUENTIAL)
                    h.update(m)
            after = _stat_key(os.fstat(fd))
        except (OSError, ValueError):
            return None
        finally:
            os.close(fd)
        if before != after:
            return None
        return h.hexdigest(), before, seen_ns
