"""Checking the files of a push before anything is written: safetensors headers and pickles.

A ``.safetensors`` file whose header breaks the format is refused (``MalformedFileError``).
Every other file is looked at by content: a pickle-based checkpoint (raw pickles or a zip of
``*.pkl``, whatever its name) is scanned without being unpickled, and what it would import is
returned for the version's manifest (``safety``, see docs/format.md). With ``refuse_unsafe`` a
file that imports something dangerous stops the push. Only headers are read for safetensors;
a pickle is read as far as its opcodes go (long byte strings are seeked over). A file the stat
cache vouches for as unchanged since it was last checked (``known``) is not opened again: its
recorded finding stands for it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import IO, Any

from weightvault.cas.pickle_scan import PickleReport, Verdict, may_hold_pickle, scan_file
from weightvault.cas.safetensors_header import parse_safetensors_header, safetensors_header_length
from weightvault.core.errors import MalformedFileError, SourceNotFoundError, UnsafeFileError
from weightvault.vault.source import SourceFile

SAFETENSORS_SUFFIX = ".safetensors"


def check_safetensors_stream(path: str, size: int, f: IO[bytes]) -> None:
    """Refuse a safetensors file whose header breaks the format, reading only the header."""
    try:
        head = f.read(8)
        total = safetensors_header_length(head, size)
        if total is not None:
            head += f.read(total - 8)
        parse_safetensors_header(head, size)
    except MalformedFileError as exc:
        raise MalformedFileError(f"{path} is not a valid safetensors file: {exc}") from None


def check_safetensors(src: SourceFile) -> None:
    try:
        with open(src.abspath, "rb") as f:
            check_safetensors_stream(src.path, src.size, f)
    except FileNotFoundError:
        raise SourceNotFoundError(f"source file {src.path} disappeared") from None


def scan_pickle(src: SourceFile) -> PickleReport | None:
    """The file's pickle report. Its first bytes are read with a raw descriptor first: most files
    of a push (configs, tokenizers, weights) cannot start a pickle or a zip, and then are not
    wrapped in a buffered file (three more calls each, for a 10,000-file push 30,000)."""
    try:
        fd = os.open(src.abspath, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise SourceNotFoundError(f"source file {src.path} disappeared") from None
    try:
        if not may_hold_pickle(os.pread(fd, 4, 0)):
            return None
        with open(fd, "rb", closefd=False) as f:
            return scan_file(f, src.size)
    finally:
        os.close(fd)


#: what a check found in one file: the pickle finding (``PickleReport.to_json``), or None for
#: a file that passed with nothing to report (a valid safetensors file, a file that is no pickle)
Finding = dict[str, Any] | None


def _known(finding: Finding) -> tuple[Callable[[], None], Callable[[], Finding]]:
    return (lambda: None), (lambda: finding)


def inspect_files(
    files: Sequence[SourceFile], refuse_unsafe: bool, known: Mapping[Path, Finding] | None = None
) -> dict[str, dict[str, Any]]:
    """Validate and scan ``files``; the pickle findings by path (empty when there is no pickle).
    ``known``: findings of files (by absolute path) unchanged since they were checked."""
    known = known or {}
    return inspect_reports(
        (
            (src.path, *_known(known[src.abspath]))
            if src.abspath in known
            else (src.path, partial(check_safetensors, src), partial(_scan_json, src))
            for src in files
        ),
        refuse_unsafe,
    )


def _scan_json(src: SourceFile) -> Finding:
    report = scan_pickle(src)
    return None if report is None else report.to_json()


def inspect_streams(
    files: Sequence[tuple[str, int, Callable[[], IO[bytes]]]], refuse_unsafe: bool
) -> dict[str, dict[str, Any]]:
    """As ``inspect_files`` for files given as (path, size, opener): a server checks uploaded files
    read back from the store this way."""

    def check(path: str, size: int, opener: Callable[[], IO[bytes]]) -> None:
        with opener() as f:
            check_safetensors_stream(path, size, f)

    def scan(size: int, opener: Callable[[], IO[bytes]]) -> Finding:
        with opener() as f:
            report = scan_file(f, size)
        return None if report is None else report.to_json()

    return inspect_reports(
        ((p, partial(check, p, n, o), partial(scan, n, o)) for p, n, o in files), refuse_unsafe
    )


def inspect_reports(
    files: Iterable[tuple[str, Callable[[], None], Callable[[], Finding]]], refuse_unsafe: bool
) -> dict[str, dict[str, Any]]:
    findings: dict[str, dict[str, Any]] = {}
    dangerous: list[str] = []
    for path, check, scan in files:
        if path.endswith(SAFETENSORS_SUFFIX):
            check()
            continue
        report = scan()
        if report is None:
            continue
        findings[path] = report
        worst = Verdict.DANGEROUS.value
        if report.get("verdict") == worst:
            bad = [f"{m}.{n}" for m, n, judged in report.get("globals", []) if judged == worst]
            dangerous.append(f"{path} ({', '.join(bad)})")
    if dangerous and refuse_unsafe:
        raise UnsafeFileError("refusing pickles that would run code when loaded: " + "; ".join(dangerous))
    return findings
