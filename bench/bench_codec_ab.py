"""The float codec of this tree against another version of ``cas/compression.py``, interleaved.

On a shared machine only a comparison made in one loop means anything: each run times
encode and decode of every version in turn, per FastCDC chunk (as a push and a pull do),
in CPU seconds of this process (one thread). Both decoders read the same blobs, written
by the other version, so the stored format is exercised as existing stores hold it; each
decoded chunk is checked against the source bytes once, untimed.

    git show main:src/weightvault/cas/compression.py > /tmp/compression_main.py
    .venv/bin/python bench/bench_codec_ab.py /tmp/compression_main.py [--runs 9] [--synthetic-mib 32]

Data as in bench_compression.py: the all-MiniLM-L6-v2 weights (fp32, fp16, bf16) and
synthetic normal values (std 0.02) in each type.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))

import bench_compression as bc  # noqa: E402
from weightvault.cas import compression as this  # noqa: E402


def load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("compression_other", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def layout_in(mod: ModuleType, layout: Any) -> Any:
    """``layout`` rebuilt from ``mod``'s own classes (each module has its own FloatKind)."""
    kinds = [mod.TensorSpan(s.start, s.end, mod.FloatKind(int(s.kind))) for s in layout.spans]
    return mod.FileLayout(tuple(kinds))


def codec_loops(
    mod: ModuleType, writer: ModuleType, ds: bc.Dataset, cuts: list[tuple[int, int]]
) -> tuple[Callable[[], None], Callable[[], None]]:
    """Encode and decode loops of ``mod``; decode reads blobs written by ``writer``."""
    mv = memoryview(ds.data)
    mine, theirs = layout_in(mod, ds.layout), layout_in(writer, ds.layout)
    layouts = [mod.layout_for_range(mine, o, n) for o, n in cuts]
    blobs = [writer.encode_chunk(mv[o : o + n], writer.layout_for_range(theirs, o, n)) for o, n in cuts]
    out = bytearray(4 << 20)
    for (o, n), (codec, stored) in zip(cuts, blobs, strict=True):  # correctness, untimed
        mod.decode_chunk_into(codec, stored, memoryview(out)[:n])
        assert out[:n] == ds.data[o : o + n], f"{ds.name}: chunk at {o} decoded wrong"

    def encode() -> None:
        for (o, n), lay in zip(cuts, layouts, strict=True):
            mod.encode_chunk(mv[o : o + n], lay)

    def decode() -> None:
        for (_o, n), (codec, stored) in zip(cuts, blobs, strict=True):
            mod.decode_chunk_into(codec, stored, memoryview(out)[:n])

    return encode, decode


def stored_bytes(mod: ModuleType, ds: bc.Dataset, cuts: list[tuple[int, int]]) -> int:
    """What ``mod`` stores for the chunks of ``ds`` (raw bytes / this = its compression ratio)."""
    mv, lay = memoryview(ds.data), layout_in(mod, ds.layout)
    return sum(len(mod.encode_chunk(mv[o : o + n], mod.layout_for_range(lay, o, n))[1]) for o, n in cuts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("other", type=Path, help="another version of src/weightvault/cas/compression.py")
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--synthetic-mib", type=int, default=32)
    args = ap.parse_args()
    other = load(args.other)
    versions = {"other": other, "this": this}
    load_before = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load {load_before}")
    print(
        "| data | decode MB/cpu-s, other | this | ratio | encode MB/cpu-s, other | this | ratio "
        "| compression ratio, other | this |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for ds in bc.load_datasets(args.synthetic_mib):
        cuts = bc.cut(ds.data)
        loops = {
            name: codec_loops(mod, other if mod is this else this, ds, cuts) for name, mod in versions.items()
        }
        cpu: dict[tuple[str, str], list[float]] = {(n, op): [] for n in loops for op in ("enc", "dec")}
        for _ in range(args.runs):
            for name, (encode, decode) in loops.items():
                for op, fn in (("enc", encode), ("dec", decode)):
                    start = time.process_time()
                    fn()
                    cpu[(name, op)].append(time.process_time() - start)
        rate = {k: len(ds.data) / 1e6 / statistics.median(v) for k, v in cpu.items()}
        d0, d1, e0, e1 = rate["other", "dec"], rate["this", "dec"], rate["other", "enc"], rate["this", "enc"]
        r0, r1 = (len(ds.data) / stored_bytes(mod, ds, cuts) for mod in (other, this))
        row = (
            f"| {ds.name} | {d0:.0f} | {d1:.0f} | {d1 / d0:.2f} | {e0:.0f} | {e1:.0f} | {e1 / e0:.2f} "
            f"| {r0:.4f} | {r1:.4f} |"
        )
        print(row, flush=True)
    print(f"load after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}; medians of {args.runs} runs")


if __name__ == "__main__":
    main()
