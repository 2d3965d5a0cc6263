"""Reading a source tree for a push, trusting none of it.

Symlinks are followed only when they resolve inside the source root (Hugging Face caches
are built of such links); anything pointing outside, special files and unsafe names are refused
before a single byte is stored.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from weightvault.core.errors import SourceNotFoundError, UnsafePathError
from weightvault.core.names import check_relative_path


@dataclass(frozen=True, slots=True)
class SourceFile:
    path: str  # relative, '/'-separated: the name inside the version
    abspath: Path
    size: int
    mtime_ns: int
    inode: int


def scan_source(source: Path | str, links_within: Path | None = None) -> list[SourceFile]:
    """The files under ``source``. Symlinks may point anywhere inside ``links_within`` (default:
    the source itself); a Hub cache snapshot links into its repo's ``blobs/``, one level up."""
    root = Path(source)
    if not root.exists() and not root.is_symlink():
        raise SourceNotFoundError(f"source {root} does not exist")
    root = root.resolve()
    fence = links_within.resolve() if links_within is not None else root
    if root.is_file():
        return [_entry(root.name, root)]
    if not root.is_dir():
        raise UnsafePathError(f"source {root} is neither a file nor a folder")
    files: list[SourceFile] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        for name in list(dirnames):
            full = here / name
            if full.is_symlink():
                dirnames.remove(name)
                target = _inside(fence, full)
                if target == root or target in full.parents:
                    raise UnsafePathError(f"symlink {full} makes a loop")
                files.extend(
                    _entry(f"{_rel(root, full)}/{sub.path}", sub.abspath)
                    for sub in scan_source(full.resolve(), fence)
                )
        for name in filenames:
            full = here / name
            rel = _rel(root, full)
            target = _inside(fence, full) if full.is_symlink() else full
            files.append(_entry(rel, target))
    files.sort(key=lambda f: f.path)
    return files


def _rel(root: Path, full: Path) -> str:
    rel = full.relative_to(root).as_posix()
    return check_relative_path(rel)


def _inside(root: Path, link: Path) -> Path:
    target = link.resolve()
    if target != root and root not in target.parents:
        raise UnsafePathError(f"symlink {link} points outside {root} (to {target})")
    if not target.exists():
        raise SourceNotFoundError(f"symlink {link} is dangling")
    return target


def _entry(rel: str, path: Path) -> SourceFile:
    check_relative_path(rel)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise SourceNotFoundError(f"source file {path} disappeared") from None
    if not stat.S_ISREG(st.st_mode):
        raise UnsafePathError(f"source {path} is not a regular file")
    return SourceFile(rel, path, st.st_size, st.st_mtime_ns, st.st_ino)
