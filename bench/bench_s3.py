#!/usr/bin/env python
"""S3 benchmark: push, pull and sync of the synthetic model against moto's S3 server on loopback.

Measures, as medians over ``--runs`` runs, every operation a child process (so interpreter
start-up and imports count on both sides) whose peak RSS and CPU time GNU time reports:

* references, the S3 client alone: ``boto3`` ``upload_file`` of each file of the model (one
  after the other) into a fresh prefix, then ``download_file`` of each into an empty folder,
  with boto3's default ``TransferConfig`` (8 MiB parts, 10 threads), tuned like weightvault's
  S3 backend (16 MiB parts, 4 in flight), and with one request per file (no multipart, no
  ranges: the fair download reference on moto, which reads a whole object per ranged GET);
* weightvault with an S3 primary (seed-shaped config, ``storage_type: aws``, no cache): the
  first push (fresh home, fresh prefix), a pull into an empty folder (same home, so the index
  is there), a re-push of the unchanged model under a new label;
* weightvault with a local primary and the S3 bucket as a secondary (``aws`` section present
  but not primary, ``sync_enabled: false``): after an untimed push to the local store, the
  timed ``weightvault sync`` to S3, then a second sync that has nothing to copy.

For each operation it also records what the server saw: moto's CPU seconds (from /proc), the
requests in moto's log by kind, the bytes that crossed the loopback interface (a machine-wide
counter, so an upper bound) and the bytes the prefix holds afterwards (a listing); and how many
cores the rest of the machine kept busy meanwhile (/proc/stat minus the client's and moto's CPU):
on a shared 2-core machine that column says which rows to trust. ``--quiet-below CORES`` waits
before each run until other jobs use fewer cores than that (they may still start mid-run).

moto runs as a child process on a free 127.0.0.1 port (``tests/storage/servers.py``) with its
temp files on ``/dev/shm`` (``--server-tmp``), so objects live in memory and the server's own
disk writes are not part of any timing; a fresh server is started for every run and each
prefix is deleted as soon as it has been measured, so at most one copy of the model is held.

Before every timed operation the data it reads locally is read once (warm page cache) and
``sync`` runs, untimed; after it a ``sync`` is timed on its own (``+sync``): boto3's
``download_file`` leaves dirty pages, weightvault writes durably. Ratios are
``(op + sync) / (reference op + sync)`` against the references measured in the same run.

    .venv/bin/python bench/bench_s3.py --quiet-below 0.3       # 2 GiB, 3 runs (~16 min)
    .venv/bin/python bench/bench_s3.py --size 256MiB --runs 1  # quick check

Prints a table and writes ``bench/RESULTS_s3.md`` (``--md``) and ``OUT/last_s3.json``.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests" / "storage"))
sys.path.insert(0, str(HERE))

import servers  # noqa: E402  (tests/storage/servers.py: the launchers the test fixtures use)

from bench_core import (  # noqa: E402  (same helpers and conventions as the core benchmark)
    GNU_TIME,
    BenchError,
    _indent,
    env_with,
    machine_info,
    rmtree,
    same_tree,
    warm,
    weightvault_cmd,
)
from weightvault.demo.synthetic import format_size, generate_model, parse_size  # noqa: E402

MODEL_NAME = "bench/synthetic"
BUCKET = "wv-bench"
KEYS = {"access_key_id": "test", "secret_access_key": "test"}
MiB = 1 << 20
CLK_TCK = os.sysconf("SC_CLK_TCK")

#: the references: name -> TransferConfig arguments ({} = boto3's defaults: 8 MiB parts, 10 threads).
#: moto answers a ranged GET by reading the whole object (moto/s3/responses.py, _handle_range_header),
#: so on this server every ranged download pays (object size / range size) times the copying; the
#: single-request row shows the plain client without that artefact.
REFERENCES: dict[str, dict[str, int]] = {
    "boto3 default": {},
    "boto3 16MiBx4": {"multipart_chunksize": 16 * MiB, "max_concurrency": 4},
    "boto3 1 request": {"multipart_threshold": 1 << 40},
}

# The reference client as a child process, like the weightvault CLI:
# argv = endpoint bucket prefix mode(up|down) config-json folder file...
BOTO3_SCRIPT = r"""
import json, os, sys, boto3
from boto3.s3.transfer import TransferConfig
endpoint, bucket, prefix, mode, config, folder, *names = sys.argv[1:]
client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                      aws_access_key_id="test", aws_secret_access_key="test")
config = TransferConfig(**json.loads(config))
for name in names:
    path = os.path.join(folder, name)
    if mode == "up":
        client.upload_file(path, bucket, f"{prefix}/{name}", Config=config)
    else:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        client.download_file(bucket, f"{prefix}/{name}", path, Config=config)
"""


# --------------------------------------------------------------------------------------
# the server and what it saw


class Moto:
    """A private moto S3 server plus the counters read around each operation."""

    def __init__(self, server_tmp: Path | None) -> None:
        self.server = servers.moto_server()
        old = os.environ.get("TMPDIR")
        if server_tmp is not None:  # only the child sees it: its spooled objects go to tmpfs
            os.environ["TMPDIR"] = str(server_tmp)
        try:
            self.server.start()
        finally:
            if server_tmp is not None:
                if old is None:
                    os.environ.pop("TMPDIR", None)
                else:
                    os.environ["TMPDIR"] = old
        assert self.server.proc is not None
        self.pid = self.server.proc.pid
        import boto3

        self.client = boto3.client(
            "s3", endpoint_url=self.endpoint, region_name="us-east-1",
            aws_access_key_id="test", aws_secret_access_key="test",
        )  # fmt: skip
        self.client.create_bucket(Bucket=BUCKET)

    @property
    def endpoint(self) -> str:
        return self.server.endpoint

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime, all threads

    def peak_rss_kib(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        return 0

    def log_offset(self) -> int:
        self.server._log.flush()
        return Path(self.server._log.name).stat().st_size

    def requests_since(self, offset: int) -> tuple[collections.Counter[str], list[str]]:
        """Requests in moto's log since ``offset``: counts by kind, and the lines themselves."""
        self.server._log.flush()
        with open(self.server._log.name, "rb") as f:
            f.seek(offset)
            text = re.sub(r"\x1b\[[0-9;]*m", "", f.read().decode(errors="replace"))  # werkzeug colours
        counts: collections.Counter[str] = collections.Counter()
        lines = []
        for m in re.finditer(r'"(GET|PUT|POST|HEAD|DELETE) (\S+) HTTP/[\d.]+" (\d+)', text):
            kind = _request_kind(m.group(1), m.group(2))
            status = int(m.group(3))
            counts[kind if status < 300 else f"{kind}({status})"] += 1
            lines.append(f"{m.group(1)} {m.group(2)} {status}")
        return counts, lines

    def prefix_bytes(self, prefix: str) -> tuple[int, int]:
        """(objects, bytes) under ``prefix/``."""
        n = total = 0
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix + "/"):
            for item in page.get("Contents", ()):
                n += 1
                total += int(item["Size"])
        return n, total

    def delete_prefix(self, prefix: str) -> None:
        keys = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix + "/"):
            keys += [{"Key": item["Key"]} for item in page.get("Contents", ())]
        for i in range(0, len(keys), 1000):
            self.client.delete_objects(Bucket=BUCKET, Delete={"Objects": keys[i : i + 1000], "Quiet": True})
        uploads = self.client.list_multipart_uploads(Bucket=BUCKET, Prefix=prefix + "/").get("Uploads", ())
        for up in uploads:
            self.client.abort_multipart_upload(Bucket=BUCKET, Key=up["Key"], UploadId=up["UploadId"])

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()
        self.server.close()


def _request_kind(method: str, target: str) -> str:
    path, _, query = target.partition("?")
    q = query.split("&") if query else []
    names = {p.split("=", 1)[0] for p in q}
    if method == "PUT" and "partNumber" in names:
        return "UploadPart"
    if method == "POST" and "uploads" in names:
        return "CreateMPU"
    if method == "POST" and "uploadId" in names:
        return "CompleteMPU"
    if method == "DELETE" and "uploadId" in names:
        return "AbortMPU"
    if method == "GET" and ("list-type" in names or "prefix" in names or path.count("/") <= 1):
        return "List"
    if method == "POST" and "delete" in names:
        return "DeleteObjects"
    return {"GET": "Get", "PUT": "Put", "HEAD": "Head", "DELETE": "Delete", "POST": "Post"}[method]


def loopback_bytes() -> int:
    try:
        return int(Path("/sys/class/net/lo/statistics/rx_bytes").read_text())
    except (OSError, ValueError):
        return 0


# --------------------------------------------------------------------------------------
# measuring one child process


@dataclass
class Sample:
    seconds: float
    sync_seconds: float
    maxrss_kib: int
    client_cpu: float  # user + sys of the child (and its waited-for children)
    server_cpu: float  # moto's user + sys during the operation
    loopback: int  # bytes received on lo during the operation (machine-wide)
    requests: collections.Counter[str] = field(default_factory=collections.Counter)
    others: float = 0.0  # cores the rest of the machine kept busy meanwhile (other jobs, kernel)
    stored: int | None = None  # bytes under the prefix afterwards (or added, for a re-push)
    stdout: str = ""
    detail: list[str] = field(default_factory=list)  # the requests, when there were few

    @property
    def durable(self) -> float:
        return self.seconds + self.sync_seconds


def run_measured(
    cmd: Sequence[str],
    moto: Moto,
    *,
    env: dict[str, str] | None = None,
    what: str,
    source: Sequence[Path] = (),
) -> Sample:
    for src in source:
        warm(src)
    os.sync()
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.NamedTemporaryFile(suffix=".time") as tfile,
    ):
        if os.access(GNU_TIME, os.X_OK):
            wrapped = [GNU_TIME, "-f", "%M %U %S", "-o", tfile.name, "--", *cmd]
        else:
            wrapped = list(cmd)
        offset = moto.log_offset()
        cpu0, lo0, busy0 = moto.cpu_seconds(), loopback_bytes(), cpu_ticks()[0]
        t0 = time.perf_counter()
        returncode = subprocess.Popen(wrapped, stdout=out, stderr=err, env=env).wait()
        seconds = time.perf_counter() - t0
        cpu1, lo1, busy1 = moto.cpu_seconds(), loopback_bytes(), cpu_ticks()[0]
        t1 = time.perf_counter()
        os.sync()
        sync_seconds = time.perf_counter() - t1
        rss, cpu = 0, 0.0
        with contextlib.suppress(OSError, ValueError, IndexError):
            last = Path(tfile.name).read_text().strip().splitlines()[-1].split()
            rss, cpu = int(last[0]), float(last[1]) + float(last[2])
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    if returncode != 0:
        tail = "\n".join(stderr.strip().splitlines()[-40:]) or "(no stderr)"
        raise BenchError(
            f"{what} failed with exit code {returncode}\n  command: {' '.join(map(str, cmd))}\n"
            f"  stderr:\n{_indent(tail, 4)}"
        )
    counts, lines = moto.requests_since(offset)
    detail = lines if len(lines) <= 40 else []
    # what the rest of the machine ran meanwhile: all busy CPU minus the client's and moto's
    others = max(0.0, (busy1 - busy0) / CLK_TCK - cpu - (cpu1 - cpu0)) / seconds
    return Sample(
        seconds, sync_seconds, rss, cpu, cpu1 - cpu0, lo1 - lo0, counts, others, stdout=stdout, detail=detail
    )


# --------------------------------------------------------------------------------------
# results


@dataclass
class Metric:
    tool: str
    op: str
    note: str = ""
    samples: list[Sample] = field(default_factory=list)

    def med(self, attr: str) -> float | None:
        values = [float(v) for s in self.samples if (v := getattr(s, attr)) is not None]
        return statistics.median(values) if values else None


@dataclass
class Results:
    args: dict[str, Any]
    metrics: dict[tuple[str, str], Metric] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def add(self, tool: str, op: str, sample: Sample, note: str = "") -> Sample:
        key = (tool, op)
        if key not in self.metrics:
            self.metrics[key] = Metric(tool, op, note)
        self.metrics[key].samples.append(sample)
        return sample


# ops and which reference op each one is compared with
UP, DOWN = "upload (upload_file x files)", "download (download_file x files)"
PUSH, PULL, REPUSH = "push, first", "pull into an empty folder", "re-push, unchanged model"
LOCAL_PUSH, SYNC, RESYNC = (
    "push to the local primary (untimed setup)",
    "sync local → S3",
    "sync again, nothing new",
)
REF_OF = {PUSH: UP, PULL: DOWN, SYNC: UP}
OP_ORDER = [UP, DOWN, PUSH, PULL, REPUSH, LOCAL_PUSH, SYNC, RESYNC]


# --------------------------------------------------------------------------------------
# the model


def prepare_model(out: Path, size: int, shards: int) -> Path:
    """The synthetic model; bench_core's identical v1 (same generator arguments) is reused."""
    core = out / f"model-{size}-{shards}"
    stamp = core / "stamp.json"
    if stamp.exists():
        with contextlib.suppress(ValueError, KeyError, OSError):
            v1 = Path(json.loads(stamp.read_text())["models"]["v1"])
            if v1.is_dir():
                return v1
    own = out / f"model-s3-{size}-{shards}"
    done = own / "stamp.json"
    if done.exists() and json.loads(done.read_text()) == {"size": size, "shards": shards}:
        return own / "v1"
    rmtree(own)
    t0 = time.perf_counter()
    generate_model(own / "v1", size, shards=shards, dtype="bf16", seed=0)
    print(f"generated {format_size(size)} model in {time.perf_counter() - t0:.1f} s", flush=True)
    done.write_text(json.dumps({"size": size, "shards": shards}))
    os.sync()
    return own / "v1"


def file_names(model: Path) -> list[str]:
    return sorted(p.relative_to(model).as_posix() for p in model.rglob("*") if p.is_file())


# --------------------------------------------------------------------------------------
# one run


def s3_config(path: Path, endpoint: str, prefix: str, primary: str) -> Path:
    import yaml

    weights: dict[str, Any] = {"storage_type": primary, "cache_enabled": False}
    if primary == "local":
        weights["sync_enabled"] = False
    cfg = {
        "model_weights": weights,
        "aws": {
            "region": "us-east-1",
            "endpoint_url": endpoint,
            **KEYS,
            "model_weights": {"s3_bucket": BUCKET, "prefix": prefix},
        },
    }
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def bench_references(
    res: Results, moto: Moto, model: Path, names: list[str], work: Path, check: bool
) -> None:
    for tool, tuning in REFERENCES.items():
        note = "TransferConfig(" + ", ".join(f"{k}={_human_int(v)}" for k, v in tuning.items()) + ")"
        config = json.dumps(tuning)
        prefix = f"ref-{uuid.uuid4().hex[:8]}"
        base = [sys.executable, "-c", BOTO3_SCRIPT, moto.endpoint, BUCKET, prefix]
        s = run_measured(
            [*base, "up", config, str(model), *names],
            moto,
            what=f"{tool} upload",
            source=[model],
        )
        s.stored = moto.prefix_bytes(prefix)[1]
        res.add(tool, UP, s, note)
        dest = work / "ref-download"
        rmtree(dest)
        dest.mkdir(parents=True)
        s2 = run_measured([*base, "down", config, str(dest), *names], moto, what=f"{tool} download")
        res.add(tool, DOWN, s2, note)
        if check and not same_tree(model, dest):
            raise BenchError(f"{tool}: the downloaded tree differs from the model")
        rmtree(dest)
        moto.delete_prefix(prefix)
        print(
            f"  {tool}: upload {s.seconds:.2f} s, download {s2.seconds:.2f} s + sync {s2.sync_seconds:.2f} s",
            flush=True,
        )


def _human_int(n: int) -> str:
    return f"{n >> 40} TiB" if n >= 1 << 40 else f"{n >> 20} MiB" if n >= MiB else str(n)


def bench_weightvault(
    res: Results, moto: Moto, model: Path, work: Path, wv: list[str], check: bool, total: int
) -> None:
    tool = "weightvault"
    env = env_with()
    # --- S3 primary: first push, pull, re-push
    prefix = f"wv-{uuid.uuid4().hex[:8]}"
    home = work / "wv-s3-home"
    rmtree(home)
    home.mkdir(parents=True)
    cfg = s3_config(work / "s3.yaml", moto.endpoint, prefix, "aws")
    base = [*wv, "--home", str(home), "--config", str(cfg)]
    s = run_measured(
        [*base, "push", MODEL_NAME, str(model), "--version", "v1", "--json"],
        moto, env=env, what="weightvault push", source=[model],
    )  # fmt: skip
    s.stored = moto.prefix_bytes(prefix)[1]
    res.add(tool, PUSH, s, "S3 primary, fresh home")
    pushed = json.loads(s.stdout)

    dest = work / "wv-pull"
    rmtree(dest)
    s2 = run_measured(
        [*base, "pull", f"{MODEL_NAME}@v1", str(dest), "-q"], moto, env=env, what="weightvault pull"
    )
    res.add(tool, PULL, s2, "same home (index), no cache")
    if check and not same_tree(model, dest):
        raise BenchError("weightvault: the pulled tree differs from the model")
    rmtree(dest)

    before = s.stored
    s3 = run_measured(
        [*base, "push", MODEL_NAME, str(model), "--version", "v2", "--json"],
        moto, env=env, what="weightvault re-push", source=[model],
    )  # fmt: skip
    s3.stored = moto.prefix_bytes(prefix)[1] - before  # bytes the re-push added
    res.add(tool, REPUSH, s3, "new label, same files")
    repushed = json.loads(s3.stdout)
    moto.delete_prefix(prefix)
    rmtree(home)
    print(
        f"  weightvault: push {s.seconds:.2f} s "
        f"({pushed['bytes_written'] / total:.1%} of the model written), "
        f"pull {s2.seconds:.2f} s + sync {s2.sync_seconds:.2f} s, re-push {s3.seconds:.2f} s "
        f"(+{s3.stored} B stored, {repushed['chunks_new']} new chunks, {dict(s3.requests)})",
        flush=True,
    )

    # --- local primary, S3 secondary: push locally, then sync
    prefix = f"sync-{uuid.uuid4().hex[:8]}"
    home = work / "wv-local-home"
    rmtree(home)
    home.mkdir(parents=True)
    cfg = s3_config(work / "sync.yaml", moto.endpoint, prefix, "local")
    base = [*wv, "--home", str(home), "--config", str(cfg)]
    s4 = run_measured(
        [*base, "push", MODEL_NAME, str(model), "--version", "v1", "--json"],
        moto, env=env, what="weightvault push (local primary)", source=[model],
    )  # fmt: skip
    res.add(tool, LOCAL_PUSH, s4, "local primary, S3 secondary, sync_enabled: false")
    if s4.requests.get("UploadPart") or s4.requests.get("Put", 0) > 2:
        raise BenchError(f"the local push wrote to S3 ({dict(s4.requests)}): replication is not deferred")
    s5 = run_measured(
        [*base, "sync", "--json"], moto, env=env, what="weightvault sync", source=[home / "store"]
    )
    s5.stored = moto.prefix_bytes(prefix)[1]
    res.add(tool, SYNC, s5, "local primary → S3 secondary")
    report = json.loads(s5.stdout)
    if not report.get("ok"):
        raise BenchError(f"sync reported errors: {report}")
    s6 = run_measured([*base, "sync", "--json"], moto, env=env, what="weightvault sync (again)")
    res.add(tool, RESYNC, s6, "")
    if check:
        local = sum(p.stat().st_size for p in (home / "store").rglob("*") if p.is_file())
        res.extra["local_store_bytes"] = local
        res.extra["synced_bytes"] = s5.stored
    moto.delete_prefix(prefix)
    rmtree(home)
    print(
        f"  weightvault: sync {s5.seconds:.2f} s ({report['bytes_copied']}), again {s6.seconds:.2f} s",
        flush=True,
    )


# --------------------------------------------------------------------------------------
# report


def _ratio(res: Results, m: Metric, ref_tool: str) -> str:
    ref_op = REF_OF.get(m.op)
    ref = res.metrics.get((ref_tool, ref_op)) if ref_op else None
    if ref is None or m.tool == ref_tool:
        return ""
    a, b = m.med("durable"), ref.med("durable")
    return f"{a / b:.2f}x" if a and b else ""


def _requests(m: Metric) -> str:
    kinds = sorted({k for s in m.samples for k in s.requests})
    parts = []
    for k in kinds:
        n = statistics.median([s.requests.get(k, 0) for s in m.samples])
        parts.append(f"{k} {n:g}")
    return ", ".join(parts)


def _bytes(n: float | None) -> str:
    if n is None:
        return ""
    return format_size(int(n)) if n >= 1 << 20 else f"{int(n):,} B"


HEADERS = [
    "tool", "operation", "op s", "+sync s", "durable s", "min..max", "MiB/s",
    *(f"vs {name}" for name in REFERENCES), "client CPU s", "moto CPU s", "peak RSS MiB",
    "other jobs, cores (max)", "loopback bytes", "bytes stored", "requests (moto log)",
]  # fmt: skip


def table_rows(res: Results, total: int) -> list[list[str]]:
    tools = [*REFERENCES, "weightvault"]
    keys = sorted(res.metrics, key=lambda k: (tools.index(k[0]), OP_ORDER.index(k[1])))
    rows = []
    for key in keys:
        m = res.metrics[key]
        op_s, sync_s, durable = m.med("seconds"), m.med("sync_seconds"), m.med("durable")
        assert op_s is not None and sync_s is not None and durable is not None
        spread = [s.durable for s in m.samples]
        moves_model = m.op in (UP, DOWN, PUSH, PULL, SYNC)
        rows.append([
            m.tool,
            m.op + (f" ({m.note})" if m.note else ""),
            f"{op_s:.2f}",
            f"{sync_s:.2f}",
            f"{durable:.2f}",
            f"{min(spread):.2f}..{max(spread):.2f}" if len(spread) > 1 else "",
            f"{total / durable / MiB:.0f}" if moves_model else "",
            *(_ratio(res, m, name) for name in REFERENCES),
            f"{m.med('client_cpu'):.1f}",
            f"{m.med('server_cpu'):.1f}",
            f"{(m.med('maxrss_kib') or 0) / 1024:.0f}",
            f"{max(s.others for s in m.samples):.2f}",
            _bytes(m.med("loopback")),
            _bytes(m.med("stored")),
            _requests(m),
        ])  # fmt: skip
    return rows


def md_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def markdown(res: Results, machine: dict[str, str], total: int, nfiles: int) -> str:
    a = res.args
    return "\n".join([
        f"## Last run ({machine['date']})",
        "",
        f"- machine: {machine['cpu']}, {machine['cores']} cores (`nproc` {machine['nproc']}), "
        f"{machine['mem']} RAM, {machine['os']}; disk: {machine['disk']}",
        f"- load average (1 min) at start / end: {machine['load_start']} / {machine.get('load_end', '?')}; "
        f"at the start of each run: {', '.join(map(str, res.extra.get('load_at_run_start', [])))} "
        "(includes this benchmark's own previous run); cores kept busy by other jobs right before each "
        f"run: {', '.join(map(str, res.extra.get('busy_cores_before_run', [])))}; "
        "on average during each run (machine CPU minus this benchmark's own): "
        f"{', '.join(map(str, res.extra.get('other_jobs_cores_during_run', [])))}",
        f"- python {machine['python']}; " + "; ".join(f"{k} {v}" for k, v in res.versions.items()),
        f"- model: {format_size(total)} in {nfiles} files ({a['shards']} bf16 safetensors shards + "
        f"config/tokenizer); runs: {a['runs']} (medians); "
        f"moto temp files in {a['server_tmp'] or 'the default TMPDIR'}",
        "- ratios: (op + sync) / (reference op + sync), references measured in the same run; "
        "push and sync are compared with the upload, pull with the download",
        "",
        md_table(HEADERS, table_rows(res, total)),
        "",
    ])  # fmt: skip


def print_table(res: Results, total: int) -> None:
    rows = table_rows(res, total)
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        for r in [HEADERS, *rows]:
            print(" | ".join(r))
        return
    table = Table(title=f"bench_s3: {format_size(total)}, medians of {res.args['runs']} runs")
    for i, h in enumerate(HEADERS):
        table.add_column(h, justify="left" if i < 2 or i == len(HEADERS) - 1 else "right")
    for r in rows:
        table.add_row(*r)
    Console(width=260).print(table)


def busy_cores(window: float = 5.0) -> float:
    """Cores busy over ``window`` seconds, from /proc/stat (call it while this benchmark is idle)."""

    b0, t0 = cpu_ticks()
    time.sleep(window)
    b1, t1 = cpu_ticks()
    return (os.cpu_count() or 1) * (b1 - b0) / max(1, t1 - t0)


def cpu_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of the whole machine, summed over its cores, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields[:8]) - idle, sum(fields[:8])


def own_cpu() -> float:
    """CPU seconds of this process and its waited-for children (the CLIs, the clients, moto once closed)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def wait_for_quiet(limit: float, patience: float = 1800.0) -> float:
    """Wait (up to ``patience`` s) until other jobs keep under ``limit`` cores busy; the last reading."""
    deadline = time.monotonic() + patience
    busy = busy_cores()
    while busy >= limit and time.monotonic() < deadline:
        print(f"  other jobs keep {busy:.2f} cores busy (>= {limit}): waiting", flush=True)
        time.sleep(25)
        busy = busy_cores()
    return busy


def write_results_md(path: Path, section: str) -> None:
    """Replace the generated section of RESULTS_s3.md, keeping the hand-written discussion."""
    begin, end = "<!-- bench_s3: begin generated -->", "<!-- bench_s3: end generated -->"
    block = f"{begin}\n{section}{end}"
    if path.exists():
        text = path.read_text()
        if begin in text and end in text:
            head, _, rest = text.partition(begin)
            _, _, tail = rest.partition(end)
            path.write_text(head + block + tail)
            return
    path.write_text(f"# S3 benchmark (bench/bench_s3.py)\n\n{block}\n")


# --------------------------------------------------------------------------------------
# main


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--size", default="2GiB", help="weight bytes of the synthetic model (default 2GiB)")
    parser.add_argument("--shards", type=int, default=4, help="safetensors shards (default 4)")
    parser.add_argument("--runs", type=int, default=3, help="runs per measurement; medians are reported")
    parser.add_argument("--out", type=Path, default=HERE / "out", help="work folder (bench/out)")
    parser.add_argument("--md", type=Path, default=HERE / "RESULTS_s3.md", help="markdown to update")
    parser.add_argument("--no-md", action="store_true", help="do not touch the markdown file")
    parser.add_argument(
        "--server-tmp", default="/dev/shm", help="TMPDIR of the moto server ('' = inherit); default /dev/shm"
    )
    parser.add_argument(
        "--quiet-below",
        type=float,
        default=None,
        metavar="CORES",
        help="before each run, wait (up to 30 min) until other jobs keep fewer than CORES cores busy",
    )
    parser.add_argument("--only", choices=["all", "references", "weightvault"], default="all")
    parser.add_argument("--weightvault", default=None, help="command to run the CLI (default: beside python)")
    args = parser.parse_args(argv)

    size = parse_size(args.size)
    out: Path = args.out.resolve()
    work = out / "work" / "s3"
    work.mkdir(parents=True, exist_ok=True)
    server_tmp = Path(args.server_tmp) if args.server_tmp else None
    res = Results(args={**vars(args), "out": str(out), "md": str(args.md), "size_bytes": size})
    machine = machine_info(out)
    machine["nproc"] = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()

    model = prepare_model(out, size, args.shards)
    names = file_names(model)
    total = sum((model / n).stat().st_size for n in names)
    wv = weightvault_cmd(args.weightvault)
    from importlib.metadata import PackageNotFoundError, version

    import boto3
    import moto as moto_pkg

    try:
        wv_version = version("weightvault")
    except PackageNotFoundError:
        wv_version = "?"
    res.versions = {
        "weightvault": wv_version,
        "boto3": boto3.__version__,
        "moto": moto_pkg.__version__,
    }
    print(f"model: {format_size(total)} in {len(names)} files at {model}", flush=True)

    peak_moto = 0
    error = None
    for i in range(args.runs):
        busy = wait_for_quiet(args.quiet_below) if args.quiet_below is not None else busy_cores(2.0)
        load = os.getloadavg()[0]
        res.extra.setdefault("load_at_run_start", []).append(round(load, 2))
        res.extra.setdefault("busy_cores_before_run", []).append(round(busy, 2))
        print(f"run {i + 1}/{args.runs} (load {load:.2f}, {busy:.2f} cores busy before it)", flush=True)
        ticks0, own0, wall0 = cpu_ticks()[0], own_cpu(), time.monotonic()
        moto = Moto(server_tmp)
        try:
            if args.only in ("all", "references"):
                bench_references(res, moto, model, names, work, check=i == 0)
            if args.only in ("all", "weightvault"):
                bench_weightvault(res, moto, model, work, wv, check=i == 0, total=total)
        except BenchError as exc:
            error = str(exc)
            print(f"ERROR:\n{_indent(error, 2)}", file=sys.stderr, flush=True)
            break
        finally:
            peak_moto = max(peak_moto, moto.peak_rss_kib())
            moto.close()
            # CPU the rest of the machine used meanwhile: everything busy minus this benchmark's own
            others = (cpu_ticks()[0] - ticks0) / CLK_TCK - (own_cpu() - own0)
            others_cores = max(0.0, others) / (time.monotonic() - wall0)
            res.extra.setdefault("other_jobs_cores_during_run", []).append(round(others_cores, 2))
            print(f"  other jobs used {others_cores:.2f} cores on average during this run", flush=True)
            for p in work.iterdir():
                if p.is_dir():
                    shutil.rmtree(p, ignore_errors=True)
    machine["load_end"] = f"{os.getloadavg()[0]:.2f}"
    res.extra["moto_peak_rss_mib"] = peak_moto // 1024
    if not res.metrics:
        return 1
    print_table(res, total)
    print(f"moto peak RSS: {peak_moto // 1024} MiB; {res.extra}")
    section = markdown(res, machine, total, len(names))
    section += f"\nmoto's peak RSS over a run: {peak_moto // 1024} MiB.\n"
    if error:
        section += f"\nThe run stopped on an error: {error.splitlines()[0]}\n"
    if not args.no_md:
        write_results_md(args.md, section)
        print(f"updated {args.md}")
    dump = {
        "machine": machine,
        "args": res.args,
        "versions": res.versions,
        "extra": res.extra,
        "error": error,
        "metrics": [
            {
                "tool": m.tool,
                "op": m.op,
                "note": m.note,
                "samples": [
                    {
                        k: (dict(v) if isinstance(v, collections.Counter) else v)
                        for k, v in s.__dict__.items()
                        if k != "stdout"
                    }
                    for s in m.samples
                ],
            }
            for m in res.metrics.values()
        ],
    }
    (out / "last_s3.json").write_text(json.dumps(dump, indent=2))
    return 1 if error else 0


if __name__ == "__main__":
    raise SystemExit(main())
