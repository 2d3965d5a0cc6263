"""Deterministic synthetic transformer checkpoints, without torch.

``generate_model`` writes a Hugging Face style model folder (safetensors shards plus
``model.safetensors.index.json``, ``config.json``, a plausible byte-level BPE
``tokenizer.json``, ``tokenizer_config.json`` and ``generation_config.json``) whose weights
look like a trained transformer's: roughly normal values with std about 0.02, a per-tensor
scale, a few scale levels across output rows, and RMSNorm weights near 1.0.

The safetensors files are written by this module itself, tensor by tensor through reused
buffers, so a multi-gigabyte model is generated in bounded memory (a few MiB). The layout
is the one the ``safetensors`` library writes: an 8-byte little-endian header length, a
compact JSON header padded with spaces to a multiple of 8 bytes, then the raw tensor bytes
in header order with contiguous ``data_offsets``.

Values of bf16 and fp16 tensors are drawn through per-tensor tables of 65,536 normal samples
indexed by raw random bits (the 16-bit formats have at most 65,536 values anyway), which is
an order of magnitude faster than sampling normals directly; fp32 tensors are sampled
directly. bf16 comes from float32 by keeping the upper 16 bits with round-to-nearest-even.

Two edits model what happens between two versions of a checkpoint:

* ``change_one_tensor`` overwrites, in place, one contiguous region inside one tensor
  (a partial fine-tune): the file size and header stay the same;
* ``insert_tensor`` rewrites a shard with one new tensor in the middle of both the header
  and the data order, so the header grows and every later byte shifts.

Command line: ``python -m weightvault.demo.synthetic DEST --size 64MiB --shards 2``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt

__all__ = [
    "DTYPES",
    "ChangedRegion",
    "InsertedTensor",
    "ModelPlan",
    "TensorSpec",
    "change_one_tensor",
    "format_size",
    "generate_model",
    "insert_tensor",
    "main",
    "parse_size",
    "plan_model",
    "read_safetensors_header",
]

#: supported dtypes: short name -> (safetensors dtype, bytes per element, torch_dtype name)
DTYPES: dict[str, tuple[str, int, str]] = {
    "bf16": ("BF16", 2, "bfloat16"),
    "fp16": ("F16", 2, "float16"),
    "fp32": ("F32", 4, "float32"),
}
_ST_TO_SHORT = {v[0]: k for k, v in DTYPES.items()}

_CHUNK_ELEMS = 1 << 20  # elements generated per step; buffers are reused across steps
_TABLE_SIZE = 1 << 16  # entries in one per-tensor value table (indexed by 16 random bits)
_SCALE_LEVELS = 4  # distinct row scales per matrix
_COPY_BUF = 8 << 20  # bytes per read when copying file data
_MAX_VOCAB = 32000
_TOKENIZER_MAX = 12000  # entries in tokenizer.json at most
_HEADER_METADATA = {"format": "pt"}


# --------------------------------------------------------------------------------------
# sizes


_SIZE_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)
_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 1 << 10,
    "ki": 1 << 10,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": 1 << 20,
    "mi": 1 << 20,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": 1 << 30,
    "gi": 1 << 30,
    "t": 1000**4,
    "tb": 1000**4,
    "tib": 1 << 40,
    "ti": 1 << 40,
}


def parse_size(text: str) -> int:
    """Parse ``"64MiB"``, ``"2GiB"``, ``"1.5GB"`` or ``"1048576"`` into a number of bytes."""
    m = _SIZE_RE.match(text)
    unit = (m.group(2) or "").lower() if m else ""
    if m is None or unit not in _UNITS:
        raise ValueError(f"not a size: {text!r} (examples: 1048576, 64MiB, 2GiB, 1.5GB)")
    return int(float(m.group(1)) * _UNITS[unit])


def format_size(n: float) -> str:
    """Human-readable binary size, e.g. ``2.00 GiB``."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.2f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------------------
# model plan


@dataclass(frozen=True)
class TensorSpec:
    """One tensor of the synthetic model, in file order."""

    name: str
    shape: tuple[int, ...]
    kind: str  # "matrix" (normal around 0) or "norm" (near 1.0)
    std: float  # base standard deviation of the values

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class ModelPlan:
    """Architecture and tensor list chosen for a requested size."""

    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    vocab_size: int
    tensors: tuple[TensorSpec, ...]

    def config(self, dtype: str) -> dict[str, Any]:
        """A ``config.json`` in the style of a Llama checkpoint."""
        return {
            "architectures": ["LlamaForCausalLM"],
            "attention_bias": False,
            "attention_dropout": 0.0,
            "bos_token_id": 1,
            "eos_token_id": 2,
            "head_dim": self.hidden_size // self.num_heads,
            "hidden_act": "silu",
            "hidden_size": self.hidden_size,
            "initializer_range": 0.02,
            "intermediate_size": self.intermediate_size,
            "max_position_embeddings": 4096,
            "mlp_bias": False,
            "model_type": "llama",
            "num_attention_heads": self.num_heads,
            "num_hidden_layers": self.num_layers,
            "num_key_value_heads": self.num_kv_heads,
            "pretraining_tp": 1,
            "rms_norm_eps": 1e-05,
            "rope_scaling": None,
            "rope_theta": 10000.0,
            "tie_word_embeddings": False,
            "torch_dtype": DTYPES[dtype][2],
            "transformers_version": "4.44.2",
            "use_cache": True,
            "vocab_size": self.vocab_size,
        }


_HIDDEN_CANDIDATES = (4096, 3072, 2560, 2048, 1536, 1024, 768, 512, 384, 256, 128, 64)


def _layer_shapes(h: int) -> tuple[int, int, int, int]:
    """(intermediate, heads, kv heads, params per layer) for hidden size ``h``."""
    inter = max(64, round(h * 8 / 3 / 64) * 64)
    head_dim = 128 if h >= 2048 else 64
    heads = max(1, h // head_dim)
    kv_heads = heads // 4 if heads % 4 == 0 and heads >= 8 else heads
    kv_dim = kv_heads * (h // heads)
    per_layer = 2 * h * h + 2 * h * kv_dim + 3 * h * inter + 2 * h
    return inter, heads, kv_heads, per_layer


def plan_model(total_bytes: int, dtype: str = "bf16") -> ModelPlan:
    """Choose a Llama-like architecture whose weights take about ``total_bytes``.

    The hidden size is the largest candidate that still gives at least twelve layers (fewer
    for tiny sizes); the vocabulary absorbs the remainder so the total lands within a row
    of the embedding matrices of the request.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, not {dtype!r}")
    elem = DTYPES[dtype][1]
    params = max(1, total_bytes // elem)
    chosen: tuple[int, int, int, int, int, int] | None = None
    for h in _HIDDEN_CANDIDATES:
        inter, heads, kv_heads, per_layer = _layer_shapes(h)
        vocab_target = min(_MAX_VOCAB, max(512, int(params * 0.12) // (2 * h)))
        layers = (params - 2 * vocab_target * h - h) // per_layer
        if layers >= 12 or h == _HIDDEN_CANDIDATES[-1]:
            layers = max(1, layers)
            vocab = max(512, (params - layers * per_layer - h) // (2 * h))
            chosen = (h, inter, heads, kv_heads, layers, vocab)
            break
    assert chosen is not None
    h, inter, heads, kv_heads, layers, vocab = chosen
    kv_dim = kv_heads * (h // heads)
    rng = np.random.default_rng(12345)  # fixed: the plan depends on the size only
    jitter = rng.lognormal(0.0, 0.25, size=layers * 7 + 2)
    specs: list[TensorSpec] = [TensorSpec("model.embed_tokens.weight", (vocab, h), "matrix", 0.02)]
    j = 0
    out_std = 0.02 / math.sqrt(2 * layers)
    for i in range(layers):
        p = f"model.layers.{i}."
        layer_specs = [
            (p + "self_attn.q_proj.weight", (h, h), 0.02),
            (p + "self_attn.k_proj.weight", (kv_dim, h), 0.02),
            (p + "self_attn.v_proj.weight", (kv_dim, h), 0.015),
            (p + "self_attn.o_proj.weight", (h, h), out_std * 2),
            (p + "mlp.gate_proj.weight", (inter, h), 0.02),
            (p + "mlp.up_proj.weight", (inter, h), 0.02),
            (p + "mlp.down_proj.weight", (h, inter), out_std * 2),
        ]
        for name, shape, std in layer_specs:
            specs.append(TensorSpec(name, shape, "matrix", float(std * jitter[j])))
            j += 1
        specs.append(TensorSpec(p + "input_layernorm.weight", (h,), "norm", 0.05))
        specs.append(TensorSpec(p + "post_attention_layernorm.weight", (h,), "norm", 0.05))
    specs.append(TensorSpec("model.norm.weight", (h,), "norm", 0.05))
    specs.append(TensorSpec("lm_head.weight", (vocab, h), "matrix", float(0.02 * jitter[j])))
    return ModelPlan(h, inter, layers, heads, kv_heads, vocab, tuple(specs))


def _split_shards(specs: Sequence[TensorSpec], shards: int, elem: int) -> list[list[TensorSpec]]:
    """Cut the tensor list into ``shards`` contiguous groups of about equal bytes."""
    n = len(specs)
    if shards > n:
        raise ValueError(f"cannot split {n} tensors into {shards} shards")
    sizes = [s.numel * elem for s in specs]
    total = sum(sizes)
    cum = np.cumsum(sizes)
    cuts = [0]
    for k in range(1, shards):
        target = total * k / shards
        i = int(np.searchsorted(cum, target, side="left")) + 1  # includes the crossing tensor
        if i > 1 and abs(cum[i - 2] - target) < abs(cum[i - 1] - target):
            i -= 1  # cutting before the crossing tensor lands closer to the target
        i = max(i, cuts[-1] + 1)
        i = min(i, n - (shards - k))
        cuts.append(i)
    cuts.append(n)
    return [list(specs[cuts[k] : cuts[k + 1]]) for k in range(shards)]


# --------------------------------------------------------------------------------------
# value generation


def _f32_to_bf16_bits(x: npt.NDArray[np.float32]) -> npt.NDArray[np.uint16]:
    """float32 -> bf16 bit patterns, round to nearest even (NaN stays a quiet NaN)."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    out = rounded.astype(np.uint16)
    nan = np.isnan(x)
    if nan.any():
        out[nan] = ((u[nan] >> 16) | 0x0040).astype(np.uint16)
    return out


def bf16_bits_to_f32(bits: npt.NDArray[np.uint16]) -> npt.NDArray[np.float32]:
    """bf16 bit patterns -> float32 (exact)."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def _to_dtype_bits(x: npt.NDArray[np.float64], dtype: str) -> npt.NDArray[Any]:
    """float values -> array of the on-disk element type (uint16 bits, float16 or float32)."""
    f32 = x.astype(np.float32)
    if dtype == "bf16":
        return _f32_to_bf16_bits(f32)
    if dtype == "fp16":
        return f32.astype(np.float16).view(np.uint16)
    return f32


def _bytes_view(a: npt.NDArray[Any]) -> memoryview:
    """A flat byte view of a contiguous array, without copying."""
    return memoryview(a.reshape(-1).view(np.uint8))  # type: ignore[arg-type]


class _Generator:
    """Streams the bytes of tensors, chunk by chunk, through buffers reused across tensors."""

    def __init__(self, dtype: str, seed: int) -> None:
        self.dtype = dtype
        self.seed = seed
        self.elem = DTYPES[dtype][1]
        self._idx = np.empty(_CHUNK_ELEMS, dtype=np.intp)
        self._out16 = np.empty(_CHUNK_ELEMS, dtype=np.uint16)
        self._out32 = np.empty(_CHUNK_ELEMS, dtype=np.float32) if dtype == "fp32" else None

    def _rng(self, key: int) -> np.random.Generator:
        return np.random.Generator(np.random.SFC64(np.random.SeedSequence([self.seed, key])))

    def chunks(self, spec: TensorSpec, key: int) -> Iterator[memoryview]:
        """Yield the tensor's raw bytes; each view is valid until the next one is requested."""
        rng = self._rng(key)
        if spec.kind == "norm" or len(spec.shape) < 2:
            # RMSNorm-like weights: a drift around 1.0 per tensor plus small noise.
            centre = 1.0 + rng.normal(0.0, 0.08)
            values = centre + rng.normal(0.0, spec.std, size=spec.numel)
            data = _to_dtype_bits(values, self.dtype)
            yield _bytes_view(data)
            return
        rows, cols = spec.shape[0], math.prod(spec.shape[1:])
        levels = spec.std * rng.lognormal(0.0, 0.2, size=_SCALE_LEVELS)
        # each row's scale level is drawn chunk by chunk from its own stream: bounded memory
        # even for a tall, thin tensor
        row_level = np.random.Generator(np.random.SFC64(np.random.SeedSequence([self.seed, key, 1])))
        rows_per_chunk = max(1, _CHUNK_ELEMS // cols)
        if rows_per_chunk * cols > _CHUNK_ELEMS:  # one row larger than a chunk
            self._grow(cols)
        if self.dtype == "fp32":
            yield from self._chunks_fp32(rng, rows, cols, rows_per_chunk, levels, row_level)
        else:
            yield from self._chunks_table(rng, rows, cols, rows_per_chunk, levels, row_level)

    def _grow(self, n: int) -> None:
        self._idx = np.empty(n, dtype=np.intp)
        self._out16 = np.empty(n, dtype=np.uint16)
        if self._out32 is not None:
            self._out32 = np.empty(n, dtype=np.float32)

    def _chunks_table(
        self,
        rng: np.random.Generator,
        rows: int,
        cols: int,
        rows_per_chunk: int,
        levels: npt.NDArray[np.float64],
        row_level: np.random.Generator,
    ) -> Iterator[memoryview]:
        base = rng.standard_normal(_TABLE_SIZE)
        table = np.concatenate([_to_dtype_bits(base * s, self.dtype) for s in levels]).view(np.uint16)
        bitgen = rng.bit_generator
        for r0 in range(0, rows, rows_per_chunk):
            r1 = min(rows, r0 + rows_per_chunk)
            n = (r1 - r0) * cols
            raw = bitgen.random_raw((n + 3) // 4).view(np.uint16)[:n]
            idx = self._idx[:n]
            np.copyto(idx, raw)
            idx2 = idx.reshape(r1 - r0, cols)
            row_offset = row_level.integers(0, _SCALE_LEVELS, size=r1 - r0, dtype=np.intp) * _TABLE_SIZE
            np.add(idx2, row_offset[:, None], out=idx2)
            out = self._out16[:n]
            np.take(table, idx, out=out, mode="clip")
            yield _bytes_view(out)

    def _chunks_fp32(
        self,
        rng: np.random.Generator,
        rows: int,
        cols: int,
        rows_per_chunk: int,
        levels: npt.NDArray[np.float64],
        row_level: np.random.Generator,
    ) -> Iterator[memoryview]:
        assert self._out32 is not None
        scales = levels.astype(np.float32)
        for r0 in range(0, rows, rows_per_chunk):
            r1 = min(rows, r0 + rows_per_chunk)
            n = (r1 - r0) * cols
            out = self._out32[:n]
            rng.standard_normal(out=out, dtype=np.float32)
            out2 = out.reshape(r1 - r0, cols)
            row_scale = scales[row_level.integers(0, _SCALE_LEVELS, size=r1 - r0, dtype=np.intp)]
            np.multiply(out2, row_scale[:, None], out=out2)
            yield _bytes_view(out)

    def flat_values(self, nbytes: int, key: int, std: float = 0.02) -> Iterator[memoryview]:
        """Yield ``nbytes`` of weight-like values of this dtype (``nbytes`` a multiple of elem)."""
        numel = nbytes // self.elem
        # rows of 1024 elements when possible (a row scale per element would be odd)
        cols = 1024 if numel % 1024 == 0 else 1
        spec = TensorSpec("_", (numel // cols, cols), "matrix", std)
        yield from self.chunks(spec, key)


# --------------------------------------------------------------------------------------
# safetensors layout


def _header_bytes(entries: Sequence[tuple[str, str, tuple[int, ...], int, int]]) -> bytes:
    """Compact JSON header padded with spaces to a multiple of 8 bytes, like safetensors."""
    header: dict[str, Any] = {"__metadata__": _HEADER_METADATA}
    for name, st_dtype, shape, start, end in entries:
        header[name] = {"dtype": st_dtype, "shape": list(shape), "data_offsets": [start, end]}
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return raw


def read_safetensors_header(path: Path) -> tuple[int, dict[str, Any]]:
    """Return ``(data_start, header)`` of a safetensors file; ``header`` keeps file order.

    ``data_start`` is the absolute offset of the first tensor byte (8 + header length).
    """
    with open(path, "rb") as f:
        prefix = f.read(8)
        if len(prefix) != 8:
            raise ValueError(f"{path}: too short for a safetensors file")
        n = int.from_bytes(prefix, "little")
        if n > 100 * (1 << 20):
            raise ValueError(f"{path}: implausible safetensors header length {n}")
        raw = f.read(n)
    if len(raw) != n:
        raise ValueError(f"{path}: truncated safetensors header")
    header = json.loads(raw)
    if not isinstance(header, dict):
        raise ValueError(f"{path}: safetensors header is not a JSON object")
    return 8 + n, header


def _tensor_entries(header: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Tensor entries (no ``__metadata__``) sorted by data offset."""
    items = [(k, v) for k, v in header.items() if k != "__metadata__"]
    items.sort(key=lambda kv: int(kv[1]["data_offsets"][0]))
    return items


def _write_all(f: BinaryIO, view: memoryview) -> None:
    written = f.write(view)
    if written is not None and written != len(view):  # raw files may write short
        f.write(view[written:])


def _write_shard(path: Path, specs: Sequence[TensorSpec], gen: _Generator, keys: Sequence[int]) -> None:
    st_dtype, elem = DTYPES[gen.dtype][0], gen.elem
    entries = []
    offset = 0
    for spec in specs:
        nbytes = spec.numel * elem
        entries.append((spec.name, st_dtype, spec.shape, offset, offset + nbytes))
        offset += nbytes
    header = _header_bytes(entries)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb", buffering=0) as f:
        f.write(len(header).to_bytes(8, "little"))
        f.write(header)
        for spec, key in zip(specs, keys, strict=True):
            for view in gen.chunks(spec, key):
                _write_all(f, view)
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------
# tokenizer and small files


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map used by byte-level BPE."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = list(bs)
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs, strict=True)}


_SYLLABLE_TEXT = (
    "th e an in er on re at en nd ti es or te of ed is it al ar st to nt ng se ha as ou io le ve co me de "
    "hi ri ro ic ne ea ra ce li ch ll be ma si om ur ca el ta la ns ge ly ei pe "
    "ion ing ent ate tion ment able ness ous ive ers ity ure per pro con com dis pre sub"
)
_SYLLABLES: tuple[str, ...] = tuple(_SYLLABLE_TEXT.split())


def _tokenizer_json(vocab_size: int, seed: int) -> dict[str, Any]:
    """A byte-level BPE ``tokenizer.json`` with ``vocab_size`` entries and matching merges.

    Every merge ``"a b"`` joins two tokens already in the vocabulary into a new one, as a
    trained BPE tokenizer's merges do; the sub-words are grown from English-like syllables.
    """
    rnd = random.Random(seed)
    specials = ["<unk>", "<s>", "</s>"]
    vocab: dict[str, int] = {tok: i for i, tok in enumerate(specials)}
    for ch in _bytes_to_unicode().values():
        vocab.setdefault(ch, len(vocab))
    merges: list[str] = []

    def add(left: str, right: str) -> str:
        token = left + right
        if token not in vocab and len(vocab) < vocab_size:
            merges.append(f"{left} {right}")
            vocab[token] = len(vocab)
        return token

    syllables: list[str] = []
    for syl in _SYLLABLES + tuple("Ġ" + s for s in _SYLLABLES):
        for k in range(2, len(syl) + 1):
            add(syl[: k - 1], syl[k - 1])
        syllables.append(syl)
    letters = list("abcdefghijklmnopqrstuvwxyz")
    words = [w for w in syllables if w in vocab]
    attempts = 0
    while len(vocab) < vocab_size and attempts < 50 * vocab_size:
        attempts += 1
        left = rnd.choice(words) if rnd.random() < 0.6 else rnd.choice(syllables)
        right = rnd.choice(_SYLLABLES) if rnd.random() < 0.85 else rnd.choice(letters)
        if left not in vocab or right not in vocab or len(left.lstrip("Ġ")) + len(right) > 11:
            continue
        before = len(vocab)
        token = add(left, right)
        if len(vocab) > before:
            words.append(token)
    while len(vocab) < vocab_size:  # only if the sub-word space ran out: reserved tokens
        vocab[f"<|reserved_{len(vocab)}|>"] = len(vocab)
    added = [
        {
            "id": i,
            "content": tok,
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": True,
        }
        for i, tok in enumerate(specials)
    ]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {
            "type": "ByteLevel",
            "add_prefix_space": False,
            "trim_offsets": True,
            "use_regex": True,
        },
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [
                {"SpecialToken": {"id": "<s>", "type_id": 0}},
                {"Sequence": {"id": "A", "type_id": 0}},
            ],
            "pair": [
                {"SpecialToken": {"id": "<s>", "type_id": 0}},
                {"Sequence": {"id": "A", "type_id": 0}},
                {"SpecialToken": {"id": "<s>", "type_id": 1}},
                {"Sequence": {"id": "B", "type_id": 1}},
            ],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}},
        },
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": vocab,
            "merges": merges,
        },
    }


def _write_json(path: Path, obj: Any, indent: int | None = 2) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=indent, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _shard_name(k: int, shards: int) -> str:
    return f"model-{k + 1:05d}-of-{shards:05d}.safetensors"


# --------------------------------------------------------------------------------------
# public API


def generate_model(
    dest: Path, total_bytes: int, shards: int = 4, dtype: str = "bf16", seed: int = 0
) -> list[Path]:
    """Write a synthetic Hugging Face style checkpoint of about ``total_bytes`` into ``dest``.

    Returns the paths of the files written (shards first, then the small files). The tensor
    bytes add up to ``total_bytes`` within one row of the embedding matrices; the same
    ``(total_bytes, shards, dtype, seed)`` always gives byte-identical files. With
    ``shards == 1`` the weights go to ``model.safetensors`` and no index is written, as
    ``transformers`` does; otherwise to ``model-0000N-of-0000M.safetensors`` plus
    ``model.safetensors.index.json``. Memory stays bounded (a few MiB) whatever the size.
    """
    if shards < 1:
        raise ValueError("shards must be >= 1")
    plan = plan_model(total_bytes, dtype)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    gen = _Generator(dtype, seed)
    groups = _split_shards(plan.tensors, shards, gen.elem)
    written: list[Path] = []
    weight_map: dict[str, str] = {}
    key = 0
    for k, group in enumerate(groups):
        name = "model.safetensors" if shards == 1 else _shard_name(k, shards)
        path = dest / name
        keys = list(range(key, key + len(group)))
        key += len(group)
        _write_shard(path, group, gen, keys)
        written.append(path)
        for spec in group:
            weight_map[spec.name] = name
    if shards > 1:
        index = {
            "metadata": {"total_size": sum(s.numel for s in plan.tensors) * gen.elem},
            "weight_map": dict(sorted(weight_map.items())),
        }
        _write_json(dest / "model.safetensors.index.json", index)
        written.append(dest / "model.safetensors.index.json")
    _write_json(dest / "config.json", plan.config(dtype))
    # the tokenizer may cover fewer ids than the (padded) embedding, as many checkpoints do;
    # the cap keeps tokenizer.json to a few hundred KB
    _write_json(dest / "tokenizer.json", _tokenizer_json(min(plan.vocab_size, _TOKENIZER_MAX), seed))
    _write_json(
        dest / "tokenizer_config.json",
        {
            "add_bos_token": True,
            "add_eos_token": False,
            "bos_token": "<s>",
            "clean_up_tokenization_spaces": False,
            "eos_token": "</s>",
            "legacy": False,
            "model_max_length": 4096,
            "pad_token": None,
            "tokenizer_class": "PreTrainedTokenizerFast",
            "unk_token": "<unk>",
        },
    )
    _write_json(
        dest / "generation_config.json",
        {
            "bos_token_id": 1,
            "do_sample": True,
            "eos_token_id": 2,
            "max_length": 4096,
            "temperature": 0.6,
            "top_p": 0.9,
            "transformers_version": "4.44.2",
        },
    )
    written += [dest / n for n in ("config.json", "tokenizer.json", "tokenizer_config.json")]
    written.append(dest / "generation_config.json")
    return written


@dataclass(frozen=True)
class ChangedRegion:
    """Where ``change_one_tensor`` wrote: absolute file offset and length, in one tensor."""

    tensor: str
    offset: int
    length: int


@dataclass(frozen=True)
class InsertedTensor:
    """What ``insert_tensor`` added: name, absolute file offset of its data and its length."""

    tensor: str
    offset: int
    length: int
    header_growth: int


def _short_dtype(st_dtype: str) -> str:
    if st_dtype not in _ST_TO_SHORT:
        raise ValueError(f"unsupported tensor dtype {st_dtype!r} (supported: {sorted(_ST_TO_SHORT)})")
    return _ST_TO_SHORT[st_dtype]


def change_one_tensor(shard: Path, fraction: float = 0.01, seed: int = 1) -> ChangedRegion:
    """Overwrite in place one contiguous region of ``fraction`` of the shard's size.

    The region lies inside one tensor's data (chosen by ``seed`` among those big enough,
    at an element-aligned offset) and receives new weight-like values of the tensor's
    dtype. The file size and the header are unchanged. Returns the region written.
    """
    if not 0 < fraction < 1:
        raise ValueError("fraction must be between 0 and 1")
    shard = Path(shard)
    data_start, header = read_safetensors_header(shard)
    entries = _tensor_entries(header)
    if not entries:
        raise ValueError(f"{shard}: no tensors")
    size = shard.stat().st_size
    rnd = np.random.default_rng([seed, 0xC4A6])
    target = int(size * fraction)
    elems = {name: DTYPES[_short_dtype(info["dtype"])][1] for name, info in entries}
    candidates = [
        (name, info)
        for name, info in entries
        if info["data_offsets"][1] - info["data_offsets"][0] >= target + elems[name]
    ]
    if not candidates:
        biggest = max(e[1]["data_offsets"][1] - e[1]["data_offsets"][0] for e in entries)
        raise ValueError(
            f"{shard}: no tensor holds {target} bytes ({fraction:.2%} of the file); largest is {biggest}"
        )
    name, info = candidates[int(rnd.integers(len(candidates)))]
    dtype = _short_dtype(info["dtype"])
    elem = elems[name]
    length = target - target % elem
    if length == 0:
        raise ValueError(f"{shard}: fraction {fraction} is less than one element")
    start, end = (int(x) for x in info["data_offsets"])
    slots = (end - start - length) // elem
    offset = data_start + start + elem * int(rnd.integers(0, slots + 1))
    gen = _Generator(dtype, seed)
    with open(shard, "r+b", buffering=0) as f:
        f.seek(offset)
        done = 0
        for view in gen.flat_values(length, key=0xC4A6):
            _write_all(f, view)
            done += len(view)
        assert done == length
    return ChangedRegion(name, offset, length)


def _copy_range(src: BinaryIO, dst: BinaryIO, start: int, length: int, buf: bytearray) -> None:
    src.seek(start)
    mv = memoryview(buf)
    left = length
    while left > 0:
        n = src.readinto(mv[: min(left, len(mv))])  # type: ignore[attr-defined]
        if not n:
            raise OSError("unexpected end of file while copying")
        _write_all(dst, mv[:n])
        left -= n


def insert_tensor(shard: Path, nbytes: int, seed: int = 2, update_index: bool = True) -> InsertedTensor:
    """Rewrite ``shard`` with one new tensor of about ``nbytes`` in the middle.

    The tensor goes in the middle of both the header order and the data order, with the
    dtype of its neighbour, so the header grows and every byte after the insertion point
    shifts; every other tensor keeps its bytes. The rewrite streams through a temporary file
    and replaces the shard atomically. With ``update_index`` a sibling
    ``model.safetensors.index.json`` that lists the shard gains the tensor, as it would in a
    real checkpoint. Returns the new tensor's name, file offset, length and the header growth.
    """
    shard = Path(shard)
    data_start, header = read_safetensors_header(shard)
    entries = _tensor_entries(header)
    if not entries:
        raise ValueError(f"{shard}: no tensors")
    mid_name, mid_info = entries[len(entries) // 2]
    dtype = _short_dtype(mid_info["dtype"])
    st_dtype, elem, _ = DTYPES[dtype]
    mid_shape = [int(x) for x in mid_info["shape"]]
    cols = mid_shape[-1] if len(mid_shape) >= 2 else 1
    if nbytes < cols * elem:
        cols = 1
    rows = nbytes // (cols * elem)
    if rows < 1:
        raise ValueError(f"nbytes {nbytes} is less than one element of {st_dtype}")
    shape = [rows, cols] if cols > 1 else [rows]
    length = rows * cols * elem
    new_name = f"model.extra.inserted_{seed}.weight"
    n = 0
    while new_name in header:
        n += 1
        new_name = f"model.extra.inserted_{seed}_{n}.weight"
    insert_at = int(mid_info["data_offsets"][0])  # relative to the data section
    # header: same key order, new key placed just before the middle tensor
    new_header: dict[str, Any] = {}
    for key, value in header.items():
        if key == mid_name:
            new_header[new_name] = {
                "dtype": st_dtype,
                "shape": shape,
                "data_offsets": [insert_at, insert_at + length],
            }
        if key == "__metadata__":
            new_header[key] = value
            continue
        s, e = (int(x) for x in value["data_offsets"])
        if s >= insert_at:
            s, e = s + length, e + length
        new_header[key] = {**value, "data_offsets": [s, e]}
    raw = json.dumps(new_header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    new_data_start = 8 + len(raw)
    data_len = shard.stat().st_size - data_start
    tmp = shard.with_name(shard.name + ".tmp")
    buf = bytearray(_COPY_BUF)
    gen = _Generator(dtype, seed)
    with open(shard, "rb", buffering=0) as src, open(tmp, "wb", buffering=0) as dst:
        dst.write(len(raw).to_bytes(8, "little"))
        dst.write(raw)
        _copy_range(src, dst, data_start, insert_at, buf)
        spec = TensorSpec(new_name, tuple(shape) if len(shape) == 2 else (rows, 1), "matrix", 0.02)
        for view in gen.chunks(spec, key=0x1A5E):
            _write_all(dst, view)
        _copy_range(src, dst, data_start + insert_at, data_len - insert_at, buf)
    os.chmod(tmp, shard.stat().st_mode & 0o7777)
    os.replace(tmp, shard)
    if update_index:
        index_path = shard.parent / "model.safetensors.index.json"
        if index_path.exists():
            index = json.loads(index_path.read_text(encoding="utf-8"))
            weight_map = index.get("weight_map", {})
            if shard.name in weight_map.values():
                weight_map[new_name] = shard.name
                index["weight_map"] = dict(sorted(weight_map.items()))
                meta = index.setdefault("metadata", {})
                if isinstance(meta.get("total_size"), int):
                    meta["total_size"] += length
                _write_json(index_path, index)
    return InsertedTensor(new_name, new_data_start + insert_at, length, new_data_start - data_start)


# --------------------------------------------------------------------------------------
# command line


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m weightvault.demo.synthetic",
        description="Write a deterministic synthetic transformer checkpoint (safetensors shards, "
        "index, config and tokenizer files).",
    )
    parser.add_argument("dest", type=Path, help="folder to write (created if missing)")
    parser.add_argument("--size", default="64MiB", help="weight bytes, e.g. 64MiB, 2GiB (default 64MiB)")
    parser.add_argument("--shards", type=int, default=4, help="number of safetensors shards (default 4)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="bf16", help="weight dtype (default bf16)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--quiet", action="store_true", help="print nothing")
    args = parser.parse_args(argv)
    try:
        size = parse_size(args.size)
    except ValueError as exc:
        parser.error(str(exc))
    t0 = time.perf_counter()
    try:
        files = generate_model(args.dest, size, shards=args.shards, dtype=args.dtype, seed=args.seed)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - t0
    if not args.quiet:
        total = 0
        for path in files:
            n = path.stat().st_size
            total += n
            print(f"{n:>14,d}  {path}")
        print(f"{total:>14,d}  total ({format_size(total)}) in {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
