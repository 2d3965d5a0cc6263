"""The pickle scanner: imports found by walking opcodes, never by unpickling."""

from __future__ import annotations

import collections
import io
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from weightvault.cas.pickle_scan import PickleReport, Verdict, classify, scan_file


def scan(data: bytes) -> PickleReport | None:
    return scan_file(io.BytesIO(data), len(data))


def imports(report: PickleReport | None) -> dict[str, str]:
    assert report is not None
    # protocols 0-2 spell the builtins module the Python 2 way
    return {
        f"{g.module.replace('__builtin__', 'builtins')}.{g.name}": g.verdict.value for g in report.globals
    }


class RunsACommand:
    """Unpickling this would call os.system; pickling it only records the call."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, ("touch /tmp/weightvault-pwned",))


class Evals:
    def __reduce__(self) -> tuple[Any, ...]:
        return (eval, ("1 + 1",))


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_dangerous_imports_are_found_in_every_protocol(protocol: int) -> None:
    data = pickle.dumps({"w": np.zeros(3), "evil": RunsACommand(), "e": Evals()}, protocol=protocol)
    report = scan(data)
    found = imports(report)
    assert found[f"{os.system.__module__}.system"] == "dangerous"
    assert found["builtins.eval"] == "dangerous"
    assert report is not None and report.verdict is Verdict.DANGEROUS and report.format == "pickle"


def test_a_benign_state_dict_is_safe() -> None:
    state = collections.OrderedDict(w=np.ones((2, 3), dtype=np.float32), step=np.int64(3))
    report = scan(pickle.dumps(state, protocol=2))
    assert report is not None and report.verdict is Verdict.SAFE, report.to_json()


def test_hand_built_protocol_0_pickle() -> None:
    report = scan(b"cposix\nsystem\n(S'id'\ntR.")
    assert imports(report) == {"posix.system": "dangerous"}


def test_stack_global_through_the_memo_is_resolved() -> None:
    # PROTO 4; "subprocess" memoised; "Popen"; fetch the module back from the memo; STACK_GLOBAL
    data = (
        b"\x80\x04"
        + b"\x8c\x0asubprocess\x94"  # SHORT_BINUNICODE, MEMOIZE (memo 0)
        + b"0"  # POP
        + b"h\x00"  # BINGET 0
        + b"\x8c\x05Popen"
        + b"\x93"  # STACK_GLOBAL
        + b")R."  # EMPTY_TUPLE, REDUCE, STOP
    )
    assert imports(scan(data)) == {"subprocess.Popen": "dangerous"}


def test_a_computed_stack_global_is_dangerous() -> None:
    data = b"\x80\x04)\x8c\x05Popen\x93)R."  # module is a tuple: the name is hidden from static reading
    report = scan(data)
    assert report is not None and report.verdict is Verdict.DANGEROUS
    assert any("computed" in p for p in report.problems)


def test_classification() -> None:
    assert classify("torch._utils", "_rebuild_tensor_v2") is Verdict.SAFE
    assert classify("torch", "BFloat16Storage") is Verdict.SAFE
    assert classify("torch", "bfloat16") is Verdict.SAFE
    assert classify("builtins", "set") is Verdict.SAFE
    assert classify("builtins", "getattr") is Verdict.DANGEROUS
    assert classify("__builtin__", "__import__") is Verdict.DANGEROUS
    assert classify("os.path", "join") is Verdict.DANGEROUS
    assert classify("torch.storage", "_load_from_bytes") is Verdict.DANGEROUS
    assert classify("mypackage.models", "Net") is Verdict.UNKNOWN


def test_not_pickles() -> None:
    assert scan(b'{"hidden_size": 64}') is None
    assert scan(b"") is None
    assert scan(np.random.default_rng(0).bytes(100_000)) is None
    assert scan(b"cat and dog\n") is None
    with zipfile.ZipFile(buf := io.BytesIO(), "w") as z:
        z.writestr("readme.txt", "no pickles here")
    assert scan(buf.getvalue()) is None


def test_a_broken_protocol_2_stream_is_reported_not_ignored() -> None:
    report = scan(b"\x80\x02" + bytes(range(200, 256)))
    assert report is not None and report.verdict is Verdict.UNKNOWN and report.problems


def test_long_byte_strings_are_skipped_not_read() -> None:
    data = pickle.dumps({"blob": b"\x00" * (8 << 20), "evil": RunsACommand()}, protocol=4)

    class Counting(io.BytesIO):
        largest = 0

        def read(self, n: int | None = -1) -> bytes:
            out = super().read(n)
            Counting.largest = max(Counting.largest, len(out))
            return out

    report = scan_file(Counting(data), len(data))
    assert report is not None and report.verdict is Verdict.DANGEROUS
    assert Counting.largest < 1 << 20  # the 8 MiB string was seeked over


def test_real_torch_checkpoints(tmp_path: Path) -> None:
    state = {"w": torch.randn(4, 4), "b": torch.zeros(4, dtype=torch.bfloat16), "n": torch.tensor(3)}
    zipped, legacy, module = io.BytesIO(), io.BytesIO(), io.BytesIO()
    torch.save(state, zipped)
    torch.save(state, legacy, _use_new_zipfile_serialization=False)
    torch.save(torch.nn.Linear(2, 2), module)
    z = scan(zipped.getvalue())
    assert z is not None and z.format == "zip" and z.verdict is Verdict.SAFE, z.to_json()
    assert "torch._utils._rebuild_tensor_v2" in imports(z)
    old = scan(legacy.getvalue())
    assert old is not None and old.format == "pickle" and old.verdict is Verdict.SAFE, old.to_json()
    whole = scan(module.getvalue())  # a pickled nn.Module names its class: loading it needs trust
    assert whole is not None and whole.verdict is Verdict.UNKNOWN
    assert imports(whole)["torch.nn.modules.linear.Linear"] == "unknown"


def test_malicious_torch_zip_is_dangerous(tmp_path: Path) -> None:
    evil = io.BytesIO()
    torch.save({"w": torch.zeros(2), "x": RunsACommand()}, evil)
    report = scan(evil.getvalue())
    assert report is not None and report.format == "zip" and report.verdict is Verdict.DANGEROUS
    # a zip written by hand with a data.pkl, as a tool other than torch might
    with zipfile.ZipFile(buf := io.BytesIO(), "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps(Evals(), protocol=2))
        z.writestr("archive/version", "3\n")
    assert imports(scan(buf.getvalue())) == {"builtins.eval": "dangerous"}
