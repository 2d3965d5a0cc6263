"""Checking the files of a push before anything is written: safetensors headers and pickles.

A ``.safetensors`` file whose header breaks the format is refused (``MalformedFileError``).
Every other file is looked at by content: a pickle-based checkpoint (raw pickles or a zip of
``*.pkl``, whatever its name) is scanned without being unpickled, and what it would import is
returned for the version's manifest (``safety``, see docs/format.md). With ``refuse_unsafe`` a
file that imports something dangerous stops the push. Only headers are read for safetensors;
a pickle is read as far as its opcodes go (long byte strings are seeked over).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from weightvault.cas.pickle_scan import PickleReport, Verdict, scan_file
from weightvault.cas.safetensors_header import parse_safetensors_header, safetensors_header_length
from weightvault.core.errors import MalformedFileError, SourceNotFoundError, UnsafeFileError
from weightvault.vault.source import SourceFile

SAFETENSORS_SUFFIX = ".safetensors"


def check_safetensors(src: SourceFile) -> None:
    """Refuse a safetensors file whose header breaks the format, reading only the header."""
    try:
        with open(src.abspath, "rb") as f:
            head = f.read(8)
            total = safetensors_header_length(head, src.size)
            if total is not None:
                head += f.read(total - 8)
            parse_safetensors_header(head, src.size)
    except MalformedFileError as exc:
        raise MalformedFileError(f"{src.path} is not a valid safetensors file: {exc}") from None
    except FileNotFoundError:
        raise SourceNotFoundError(f"source file {src.path} disappeared") from None


def scan_pickle(src: SourceFile) -> PickleReport | None:
    try:
        with open(src.abspath, "rb") as f:
            return scan_file(f, src.size)
    except FileNotFoundError:
        raise SourceNotFoundError(f"source file {src.path} disappeared") from None


def inspect_files(files: Sequence[SourceFile], refuse_unsafe: bool) -> dict[str, dict[str, Any]]:
    """Validate and scan ``files``; the pickle findings by path (empty when there is no pickle)."""
    findings: dict[str, dict[str, Any]] = {}
    dangerous: list[str] = []
    for src in files:
        if src.path.endswith(SAFETENSORS_SUFFIX):
            check_safetensors(src)
            continue
        report = scan_pickle(src)
        if report is None:
            continue
        findings[src.path] = report.to_json()
        if report.verdict is Verdict.DANGEROUS:
            bad = [f"{g.module}.{g.name}" for g in report.globals if g.verdict is Verdict.DANGEROUS]
            dangerous.append(f"{src.path} ({', '.join(bad)})")
    if dangerous and refuse_unsafe:
        raise UnsafeFileError("refusing pickles that would run code when loaded: " + "; ".join(dangerous))
    return findings
