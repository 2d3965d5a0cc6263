"""Codec 2 (ZSTD_FLOAT) against codec 3 (FLOAT_PLANES) on a safetensors model, interleaved.

Run: .venv/bin/python bench/codec3_bench.py MODEL_DIR [ROUNDS]
Chunks are cut as a push cuts them (the project's chunker over each whole file, each chunk
given its part of the file's float layout). One thread, CPU seconds (time.process_time) and
wall seconds; each round encodes and decodes every chunk with codec 2, then codec 3 (the
order alternating per round), so both see the same machine load. Prints medians over rounds.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

from weightvault.cas.chunker import Chunker
from weightvault.cas.compression import Codec, decode_chunk_into, encode_chunk_view, layout_for_range
from weightvault.vault.codecs import read_file_layout

GIB = 1 << 30


def load(model: Path) -> list[tuple[bytes, object]]:
    out = []
    ch = Chunker()
    for f in sorted(model.glob("*.safetensors")):
        data = f.read_bytes()
        fl = read_file_layout(f, len(data))
        pos = 0
        for c in ch.chunk_bytes(data):
            out.append((bytes(c), layout_for_range(fl, pos, len(c))))
            pos += len(c)
    return out


def run(
    chunks: list[tuple[bytes, object]], blobs: list[tuple[int, bytes]], codec: Codec
) -> tuple[float, float, float, float, int]:
    """(encode CPU-s, encode wall-s, decode CPU-s, decode wall-s, stored bytes); ``blobs`` are
    this codec's blobs of ``chunks``, made beforehand so that no copy or allocation is timed."""
    stored = 0
    c0, w0 = time.process_time(), time.perf_counter()
    for raw, layout in chunks:
        stored += len(encode_chunk_view(raw, layout, float_codec=codec)[1])  # type: ignore[arg-type]
    c1, w1 = time.process_time(), time.perf_counter()
    out = bytearray(max(len(r) for r, _ in chunks))
    mv = memoryview(out)
    c2, w2 = time.process_time(), time.perf_counter()
    for (raw, _), (k, b) in zip(chunks, blobs, strict=True):
        decode_chunk_into(k, b, mv[: len(raw)])
    c3, w3 = time.process_time(), time.perf_counter()
    return c1 - c0, w1 - w0, c3 - c2, w3 - w2, stored


def main() -> None:
    model = Path(sys.argv[1])
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    chunks = load(model)
    raw = sum(len(r) for r, _ in chunks)
    gib = raw / GIB
    print(f"{len(chunks)} chunks, {raw / (1 << 20):.0f} MiB; load {os.getloadavg()[0]:.2f}", flush=True)
    blobs: dict[Codec, list[tuple[int, bytes]]] = {Codec.ZSTD_FLOAT: [], Codec.FLOAT_PLANES: []}
    for raw_c, layout in chunks:  # sanity: both decode to the chunk
        for codec in blobs:
            k, s = encode_chunk_view(raw_c, layout, float_codec=codec)  # type: ignore[arg-type]
            o = bytearray(len(raw_c))
            decode_chunk_into(k, bytes(s), o)
            assert o == raw_c
            blobs[codec].append((k, bytes(s)))
    res: dict[Codec, list[tuple[float, float, float, float, int]]] = {
        Codec.ZSTD_FLOAT: [],
        Codec.FLOAT_PLANES: [],
    }
    for i in range(rounds):
        order = [Codec.ZSTD_FLOAT, Codec.FLOAT_PLANES][:: 1 if i % 2 == 0 else -1]
        for codec in order:
            r = run(chunks, blobs[codec], codec)
            res[codec].append(r)
            print(
                f"round {i} codec {int(codec)}: enc {r[0] / gib:.3f} CPU-s/GiB ({r[1] / gib:.3f} wall)"
                f"  dec {raw / 1e9 / r[2]:.2f} GB/CPU-s ({raw / 1e9 / r[3]:.2f} GB/wall-s)"
                f"  ratio {r[4] / raw:.5f}"
                f"  load {os.getloadavg()[0]:.2f}",
                flush=True,
            )
    print(
        "\n| codec | encode CPU-s/GiB | encode wall-s/GiB | decode GB/CPU-s | decode GB/wall-s | stored/raw |"
    )
    print("|---|---|---|---|---|---|")
    for codec, rs in res.items():
        med = [statistics.median(x[j] for x in rs) for j in range(4)]
        print(
            f"| {int(codec)} {codec.name} | {med[0] / gib:.3f} | {med[1] / gib:.3f}"
            f" | {raw / 1e9 / med[2]:.2f} | {raw / 1e9 / med[3]:.2f} | {rs[0][4] / raw:.5f} |"
        )


if __name__ == "__main__":
    main()
