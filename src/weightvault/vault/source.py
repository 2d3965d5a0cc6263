"""Reading a source tree for a push, trusting none of it.

Symlinks are followed only when they resolve inside the source root (Hugging Face caches
are built of such links); anything pointing outside, special files and unsafe names are refused
before a single byte is stored.

By default VCS and tool cache folders are not part of a model (as ``huggingface_hub``'s
``upload_folder`` skips ``.git`` and its own cache): ``DEFAULT_IGNORES`` lists them; a push with
``default_ignores=False`` takes everything.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from weightvault.core.errors import SourceNotFoundError, UnsafePathError
from weightvault.core.names import check_relative_path

#: folder (or file) names skipped at any depth: version control metadata and tool caches
DEFAULT_IGNORES: frozenset[str] = frozenset(
    {".git", ".hg", ".svn", ".bzr", "__pycache__", ".ipynb_checkpoints"}
)
#: multi-part paths skipped at any depth: the Hub client's download metadata in a local_dir
DEFAULT_IGNORED_PATHS: tuple[tuple[str, ...], ...] = ((".cache", "huggingface"),)
_LAST_PARTS = frozenset(skip[-1] for skip in DEFAULT_IGNORED_PATHS)


def ignored(rel: str) -> bool:
    """Whether the default ignore rules skip the source path ``rel`` ('/'-separated)."""
    parts = tuple(rel.split("/"))
    if any(p in DEFAULT_IGNORES for p in parts):
        return True
    return any(parts[i : i + len(skip)] == skip for skip in DEFAULT_IGNORED_PATHS for i in range(len(parts)))


@dataclass(frozen=True, slots=True)
class SourceFile:
    path: str  # relative, '/'-separated: the name inside the version
    abspath: Path
    size: int
    mtime_ns: int
    inode: int
    ctime_ns: int = 0  # with ``dev``: the rest of the stat the push's stat cache keys on
    dev: int = 0


def scan_source(
    source: Path | str, *, default_ignores: bool = True, links_within: Path | None = None
) -> list[SourceFile]:
    """The files of ``source`` (a folder or one file), sorted by path. Symlinks may point anywhere
    inside ``links_within`` (default: the source itself); a Hub cache snapshot links into its
    repo's ``blobs/``, one level up."""
    root = Path(source)
    if not root.exists() and not root.is_symlink():
        raise SourceNotFoundError(f"source {root} does not exist")
    root = _resolve(root)
    fence = _resolve(links_within) if links_within is not None else root
    if root.is_file():
        return [_entry(root.name, root)]
    if not root.is_dir():
        raise UnsafePathError(f"source {root} is neither a file nor a folder")
    files: list[SourceFile] = []
    _walk(root, str(root), "", fence, default_ignores, files)
    files.sort(key=lambda f: f.path)
    return files


def _walk(
    root: Path, folder: str, prefix: str, fence: Path, default_ignores: bool, files: list[SourceFile]
) -> None:
    """The files under ``folder`` (``prefix``: its path in the source, '' or ending in '/').
    ``os.scandir`` tells links and folders apart without a call per entry, and a file costs one
    ``stat``; a folder that cannot be listed is skipped, as ``os.walk`` does."""
    try:
        with os.scandir(folder) as it:
            entries = list(it)
    except OSError:
        return
    for entry in entries:
        rel = check_relative_path(prefix + entry.name)
        # the folders above were not ignored (else they were not walked): only a rule that ends
        # at this name can match
        name = entry.name
        if default_ignores and (name in DEFAULT_IGNORES or (name in _LAST_PARTS and ignored(rel))):
            continue
        link = entry.is_symlink()
        try:
            is_dir = entry.is_dir()  # through a link, as os.walk sorts them
        except OSError:
            is_dir = False
        if is_dir and not link:
            _walk(root, entry.path, rel + "/", fence, default_ignores, files)
        elif is_dir:
            full = Path(entry.path)
            target = _inside(fence, full)
            if target == root or target in full.parents:
                raise UnsafePathError(f"symlink {full} makes a loop")
            files.extend(
                SourceFile(f"{rel}/{sub.path}", *_stat_fields(sub))
                for sub in scan_source(target, default_ignores=default_ignores, links_within=fence)
            )
        elif link:
            files.append(_entry(rel, _inside(fence, Path(entry.path)), checked=True))
        else:
            files.append(_entry(rel, Path(entry.path), checked=True))


def _resolve(path: Path) -> Path:
    """``path.resolve()``, a symlink loop being a refused source rather than a RuntimeError."""
    try:
        return path.resolve(strict=path.is_symlink())
    except FileNotFoundError:
        raise SourceNotFoundError(f"symlink {path} is dangling") from None
    except (RuntimeError, OSError) as exc:  # 3.11/3.12 raise RuntimeError on a loop, 3.13 OSError
        raise UnsafePathError(f"symlink {path} makes a loop ({exc})") from None


def _inside(root: Path, link: Path) -> Path:
    target = _resolve(link)
    if target != root and root not in target.parents:
        raise UnsafePathError(f"symlink {link} points outside {root} (to {target})")
    if not target.exists():
        raise SourceNotFoundError(f"symlink {link} is dangling")
    return target


def _stat_fields(f: SourceFile) -> tuple[Path, int, int, int, int, int]:
    return f.abspath, f.size, f.mtime_ns, f.inode, f.ctime_ns, f.dev


def _entry(rel: str, path: Path, checked: bool = False) -> SourceFile:
    if not checked:
        check_relative_path(rel)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise SourceNotFoundError(f"source file {path} disappeared") from None
    if not stat.S_ISREG(st.st_mode):
        raise UnsafePathError(f"source {path} is not a regular file")
    return SourceFile(rel, path, st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns, st.st_dev)
