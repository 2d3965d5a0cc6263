"""What a pickle-based checkpoint would import when loaded, found without unpickling it.

Loading a pickle runs code: every ``GLOBAL``/``STACK_GLOBAL``/``INST`` opcode imports a
callable that ``REDUCE``/``BUILD`` may then call (``os.system`` with any argument, say). So
we walk the opcodes with ``pickletools.genops`` (which decodes, never executes), follow the
stack just enough to know the module and name strings a ``STACK_GLOBAL`` consumes, and
judge every import against an allow-list of the rebuild functions PyTorch, NumPy and the
standard containers use, and a deny-list of what runs commands, code or I/O.

Formats are told by content, not by name: a zip holding ``*.pkl`` members (``torch.save``
since 1.6), or a run of pickles at the start of the file (the legacy ``torch.save`` writes
five, then raw storage bytes; plain ``pickle.dump`` one). Pure apart from reading the binary
file object it is given; large byte strings inside a pickle are skipped by seeking, so memory
stays small whatever the checkpoint's size.
"""

from __future__ import annotations

import pickletools
import zipfile
from dataclasses import dataclass, field
from enum import StrEnum
from typing import IO, Any, Final, cast

#: The callables a checkpoint needs to rebuild tensors, arrays and containers.
SAFE_GLOBALS: Final = frozenset(
    {
        "collections.OrderedDict",
        "collections.defaultdict",
        "copyreg._reconstructor",
        "_codecs.encode",
        "torch._utils._rebuild_tensor",
        "torch._utils._rebuild_tensor_v2",
        "torch._utils._rebuild_tensor_v3",
        "torch._utils._rebuild_parameter",
        "torch._utils._rebuild_parameter_with_state",
        "torch._utils._rebuild_sparse_tensor",
        "torch._utils._rebuild_nested_tensor",
        "torch._utils._rebuild_qtensor",
        "torch._utils._rebuild_meta_tensor_no_storage",
        "torch._utils._rebuild_device_tensor_from_numpy",
        "torch._utils._rebuild_wrapper_subclass",
        "torch._tensor._rebuild_from_type_v2",
        "torch.nn.parameter.Parameter",
        "torch.storage.UntypedStorage",
        "torch.storage.TypedStorage",
        "torch.Size",
        "torch.device",
        "numpy.ndarray",
        "numpy.dtype",
        "numpy.core.multiarray._reconstruct",
        "numpy.core.multiarray.scalar",
        "numpy._core.multiarray._reconstruct",
        "numpy._core.multiarray.scalar",
        "numpy.core.numeric._frombuffer",
        "numpy._core.numeric._frombuffer",
    }
)
#: ``torch.FloatStorage`` & co. and ``torch.float32`` & co. (dtypes pickle as module globals).
_TORCH_SAFE_SUFFIXES: Final = ("Storage",)
_TORCH_DTYPES: Final = frozenset(
    [
        "float",
        "float16",
        "float32",
        "float64",
        "bfloat16",
        "half",
        "double",
        "complex64",
        "complex128",
        "cfloat",
        "cdouble",
        "uint8",
        "int8",
        "int16",
        "int32",
        "int64",
        "short",
        "int",
        "long",
        "bool",
        "uint16",
        "uint32",
        "uint64",
        "float8_e4m3fn",
        "float8_e5m2",
        "float8_e4m3fnuz",
        "float8_e5m2fnuz",
        "qint8",
        "quint8",
        "qint32",
        "quint4x2",
        "strided",
        "sparse_coo",
        "per_tensor_affine",
        "per_channel_affine",
        "contiguous_format",
        "channels_last",
        "preserve_format",
    ]
)
#: Builtins a pickle may construct; any other builtin (eval, exec, getattr, open, __import__, …) is dangerous.
_SAFE_BUILTINS: Final = frozenset(
    [
        "set",
        "frozenset",
        "slice",
        "range",
        "complex",
        "bytearray",
        "bytes",
        "dict",
        "list",
        "tuple",
        "int",
        "float",
        "bool",
        "str",
    ]
)
#: Modules whose every callable can run commands, code, imports or I/O.
DANGEROUS_MODULES: Final = frozenset(
    {
        "os", "posix", "nt", "posixpath", "ntpath", "subprocess", "sys", "socket", "shutil", "pty",
        "importlib", "runpy", "code", "codeop", "ctypes", "marshal", "pickle", "_pickle", "dill",
        "cloudpickle", "types", "webbrowser", "multiprocessing", "signal", "asyncio", "http",
        "urllib", "requests", "ftplib", "smtplib", "telnetlib", "commands", "popen2", "bdb", "pdb",
        "timeit", "profile", "cProfile", "trace", "shelve", "zipimport", "pkgutil", "imp", "io",
        "_io", "operator", "_operator", "tempfile", "glob", "pathlib", "platform", "sysconfig",
        "venv", "ensurepip", "distutils", "setuptools", "pip", "_posixsubprocess", "builtins",
        "__builtin__", "__builtins__",
    }
)  # fmt: skip
#: Single callables elsewhere that load code or nested pickles.
DANGEROUS_GLOBALS: Final = frozenset(
    {
        "torch.load",
        "torch.storage._load_from_bytes",
        "torch.serialization.load",
        "torch.hub.load",
        "torch.hub.load_state_dict_from_url",
        "torch.jit.load",
        "torch._C._jit_script_compile",
        "numpy.load",
        "numpy.testing._private.utils.runstring",
        "numpy.lib.npyio.load",
        "functools.partial",
        "functools.reduce",
    }
)

ZIP_MAGIC: Final = b"PK\x03\x04"
#: At most this many pickles one after another at the start of a file (legacy torch.save writes 5).
MAX_PICKLES: Final = 16
#: Byte-string arguments longer than this are skipped by seeking, not read.
_SKIP_OVER: Final = 1 << 16


class Verdict(StrEnum):
    SAFE = "safe"  # only allow-listed imports
    UNKNOWN = "unknown"  # imports outside both lists (custom classes, say): loading needs trust
    DANGEROUS = "dangerous"  # imports that run commands or code, or hide what they import


_RANK: Final = {Verdict.SAFE: 0, Verdict.UNKNOWN: 1, Verdict.DANGEROUS: 2}


def classify(module: str, name: str) -> Verdict:
    """Judge one imported callable ``module.name``."""
    qual = f"{module}.{name}"
    root = module.split(".", 1)[0]
    if module in ("builtins", "__builtin__") and name in _SAFE_BUILTINS:
        return Verdict.SAFE
    if qual in SAFE_GLOBALS:
        return Verdict.SAFE
    if module == "torch" and (name.endswith(_TORCH_SAFE_SUFFIXES) or name in _TORCH_DTYPES):
        return Verdict.SAFE
    if root in DANGEROUS_MODULES or qual in DANGEROUS_GLOBALS:
        return Verdict.DANGEROUS
    return Verdict.UNKNOWN


@dataclass(frozen=True, slots=True)
class ImportedGlobal:
    module: str
    name: str
    verdict: Verdict


@dataclass(slots=True)
class PickleReport:
    """What one file would import when unpickled."""

    #: "pickle" (one or more pickles at the start of the file) or "zip" (pickles inside a zip)
    format: str
    globals: list[ImportedGlobal] = field(default_factory=list)
    #: what could not be decoded (the walk stops there; a loader would run what came before)
    problems: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> Verdict:
        worst = Verdict.SAFE
        for g in self.globals:
            if _RANK[g.verdict] > _RANK[worst]:
                worst = g.verdict
        if self.problems and worst is Verdict.SAFE:
            worst = Verdict.UNKNOWN
        return worst

    def to_json(self) -> dict[str, Any]:
        """The record kept in the version's manifest (see docs/format.md, ``safety``)."""
        out: dict[str, Any] = {
            "format": self.format,
            "verdict": self.verdict.value,
            "globals": [[g.module, g.name, g.verdict.value] for g in self.globals],
        }
        if self.problems:
            out["problems"] = list(self.problems)
        return out

    def add(self, module: str, name: str, verdict: Verdict) -> None:
        g = ImportedGlobal(module, name, verdict)
        if g not in self.globals:
            self.globals.append(g)


class _Skipped(bytes):
    """Stands for a long byte-string argument that was seeked over, not read."""

    _n: int

    def __new__(cls, n: int) -> _Skipped:
        obj = super().__new__(cls)
        obj._n = n
        return obj

    def __len__(self) -> int:
        return self._n


_BYTES_OPS: Final = frozenset({"BINBYTES", "BINBYTES8", "BYTEARRAY8"})
_OP_NAMES: Final = {op.code: op.name for op in pickletools.opcodes}
#: protocol-0 arguments are lines: longer ones are not real pickles and must not be read whole
_MAX_LINE: Final = 1 << 16


class _Source:
    """What ``genops`` reads from: ``f``, except that a long ``bytes`` argument is seeked over.

    ``genops`` reads each opcode with ``read(1)`` and then its argument; a byte string's
    length comes in a 4- or 8-byte read, so a long read right after a bytes opcode is the
    string itself."""

    def __init__(self, f: IO[bytes], size: int) -> None:
        self._f = f
        self._size = size
        self._last_op: str | None = None

    def read(self, n: int = -1) -> bytes:
        if n > _SKIP_OVER and self._last_op in _BYTES_OPS:
            here = self._f.tell()
            if here + n > self._size:
                return b""  # short: genops reports the truncation
            self._f.seek(here + n)
            return _Skipped(n)
        data = self._f.read(n)
        if n == 1:
            self._last_op = _OP_NAMES.get(data.decode("latin-1")) if data else None
        return data

    def readline(self) -> bytes:
        return self._f.readline(_MAX_LINE)

    def tell(self) -> int:
        return self._f.tell()


_STRING_OPS: Final = frozenset(
    {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING", "BINSTRING", "SHORT_BINSTRING"}
)
_MARK: Final = object()


def _walk_one(src: _Source, report: PickleReport) -> bool:
    """Walk one pickle from the current position; False if it did not decode up to its STOP."""
    stack: list[Any] = []
    memo: dict[int, Any] = {}
    try:
        for op, arg, _pos in pickletools.genops(cast(IO[bytes], src)):
            name = op.name
            if name in ("GLOBAL", "INST"):
                module, _, attr = str(arg).partition(" ")
                report.add(module, attr, classify(module, attr))
            elif name == "STACK_GLOBAL":
                attr_v = stack.pop() if stack else None
                module_v = stack.pop() if stack else None
                if isinstance(module_v, str) and isinstance(attr_v, str):
                    report.add(module_v, attr_v, classify(module_v, attr_v))
                else:  # an import whose name is computed while loading: hiding something
                    report.add("?", "?", Verdict.DANGEROUS)
                    report.problems.append("STACK_GLOBAL of a name computed at load time")
                stack.append(None)
                continue
            elif name in ("EXT1", "EXT2", "EXT4"):
                report.add("copyreg", f"extension {arg}", Verdict.UNKNOWN)
            if name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
                memo[len(memo) if name == "MEMOIZE" else cast(int, arg)] = stack[-1] if stack else None
                continue
            if name in ("GET", "BINGET", "LONG_BINGET"):
                stack.append(memo.get(cast(int, arg)))
                continue
            if name == "DUP":
                stack.append(stack[-1] if stack else None)
                continue
            _apply_stack_effect(op, stack)
            if name in _STRING_OPS and isinstance(arg, str):
                stack[-1] = arg
            if name == "STOP":
                return True
    except (ValueError, EOFError, TypeError, UnicodeDecodeError, OverflowError) as exc:
        report.problems.append(f"undecodable pickle: {exc}")
        return False
    report.problems.append("the pickle ends without STOP")
    return False


def _apply_stack_effect(op: pickletools.OpcodeInfo, stack: list[Any]) -> None:
    before = op.stack_before
    if pickletools.markobject in before:
        while stack and stack[-1] is not _MARK:
            stack.pop()
        if not stack:
            raise ValueError(f"{op.name} without a MARK")
        stack.pop()
        fixed = before.index(pickletools.markobject)
    else:
        fixed = len(before)
    if len(stack) < fixed:
        raise ValueError(f"{op.name} on a too short stack")
    del stack[len(stack) - fixed :]
    stack.extend(_MARK if item is pickletools.markobject else None for item in op.stack_after)


def _starts_pickle(head: bytes) -> bool:
    """A PROTO opcode (protocol 2+), or an opcode protocols 0 and 1 commonly begin with."""
    if len(head) >= 2 and head[0] == 0x80:
        return 2 <= head[1] <= 5
    return head[:1] in (b"(", b"}", b"]", b")", b"c", b"N", b"I", b"K", b"J")


def _scan_stream(f: IO[bytes], size: int, report: PickleReport) -> bool:
    """Pickles one after another from the start of ``f``; False if there is none."""
    src = _Source(f, size)
    decoded = 0
    for _ in range(MAX_PICKLES):
        start = f.tell()
        head = f.read(2)
        f.seek(start)
        if start >= size or not _starts_pickle(head):
            break
        n_globals, n_problems = len(report.globals), len(report.problems)
        if _walk_one(src, report):
            decoded += 1
            continue
        imported = len(report.globals) > n_globals
        if not imported and (decoded or head[:1] != b"\x80"):
            # raw data after the pickles (legacy torch.save storages), or bytes that merely
            # start like a protocol-0 pickle: nothing a loader would run
            del report.problems[n_problems:]
        break  # a loader stops at the first pickle that breaks; what it imported is on record
    return decoded > 0 or bool(report.globals) or bool(report.problems)


def may_hold_pickle(head: bytes) -> bool:
    """Whether a file whose first four bytes are ``head`` could hold a pickle (``scan_file``
    returns ``None`` for every other file, so a caller may skip it)."""
    return head == ZIP_MAGIC or _starts_pickle(head[:2])


def scan_file(f: IO[bytes], size: int) -> PickleReport | None:
    """The imports of the pickle-based checkpoint in ``f`` (seekable, at any position); ``None``
    when it holds no pickle at all."""
    f.seek(0)
    head = f.read(4)
    f.seek(0)
    if head == ZIP_MAGIC:
        return _scan_zip(f)
    report = PickleReport("pickle")
    if not _scan_stream(f, size, report):
        return None
    return report


def _scan_zip(f: IO[bytes]) -> PickleReport | None:
    try:
        archive = zipfile.ZipFile(f)
    except (zipfile.BadZipFile, OSError, ValueError):
        return None
    with archive:
        members = [i for i in archive.infolist() if i.filename.endswith(".pkl") and not i.is_dir()]
        if not members:
            return None
        report = PickleReport("zip")
        for info in members:
            try:
                with archive.open(info) as member:
                    n = len(report.problems)  # zip members seek forwards by decompressing
                    if not _scan_stream(member, info.file_size, report) and len(report.problems) == n:
                        report.problems.append(f"{info.filename} is not a pickle")
            except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError) as exc:
                report.problems.append(f"{info.filename} cannot be read: {exc}")
        return report
