#!/usr/bin/env python
"""Core benchmark: push, pull, cache and deduplication of a sharded checkpoint.

Generates a synthetic transformer checkpoint (default 2 GiB: 4 bf16 safetensors shards plus
config and tokenizer files) and measures, as medians over ``--runs`` runs, with every
operation run as a child process whose peak RSS is measured by GNU time (see
``_rss_wrapper`` for why not ``os.wait4`` from here):

* the reference: ``cp -r SRC DST`` then ``sync`` (durable, like a push);
* weightvault: push (fresh home each run), pull into an empty folder with an empty cache,
  pull again with the warm cache into a new folder, re-push after one shard had 1% of its
  bytes overwritten in one contiguous region, re-push after a tensor was inserted into
  another shard (header grows, every later byte shifts); bytes added to the store each time;
* peers, each in its own virtualenv under ``OUT/peers-venv`` (created on first use):
  DVC (``dvc add`` + ``dvc push`` to a local remote, ``dvc pull`` in a fresh clone with an
  empty cache and with a warm cache, bytes added to the remote) and MLflow
  (``log_artifacts`` to a local file store, ``download_artifacts``, bytes added).

Before every timed operation the page cache is flushed with ``sync`` (outside the timing) so
dirty pages of earlier steps do not bias it; after it, a second ``sync`` is timed on its own
and reported as ``+sync``: a tool that already made its writes durable pays ~0 there. Ratios
are ``(op + sync) / (cp -r + sync)`` against the reference measured in the same invocation.
Nothing is dropped from the page cache; instead the data each operation reads (the source
folder for a push, the store, remote or cache for a pull) is read once, untimed, right before
it, so every tool starts from the same warm page cache.

    .venv/bin/python bench/bench_core.py                      # 2 GiB, 3 runs, everything
    .venv/bin/python bench/bench_core.py --size 256MiB --runs 1 --only weightvault

Prints a table and writes ``OUT/last_core.md`` and ``OUT/last_core.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
try:
    from weightvault.demo.synthetic import (
        change_one_tensor,
        format_size,
        generate_model,
        insert_tensor,
        parse_size,
    )
except ImportError:  # running from a checkout without the package installed
    sys.path.insert(0, str(REPO / "src"))
    from weightvault.demo.synthetic import (
        change_one_tensor,
        format_size,
        generate_model,
        insert_tensor,
        parse_size,
    )

MODEL_NAME = "bench/synthetic"
PEER_PACKAGES = {"dvc": ["dvc"], "mlflow": ["mlflow"]}
QUIET_ENV = {
    "DVC_NO_ANALYTICS": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "MLFLOW_ALLOW_FILE_STORE": "true",  # the brief: a local file store, in maintenance mode since 3.x
    "PYTHONWARNINGS": "ignore",
}


class BenchError(RuntimeError):
    """A measured command failed; the message carries its command line and stderr."""


# --------------------------------------------------------------------------------------
# measuring one child process


@dataclass
class Sample:
    seconds: float  # the operation alone
    sync_seconds: float  # the `sync` right after it
    maxrss_kib: int  # peak RSS of the child (and its own children)
    stdout: str = ""

    @property
    def durable(self) -> float:
        return self.seconds + self.sync_seconds


GNU_TIME = "/usr/bin/time"
# Fallback when GNU time is missing: a minimal Python that forks, execs and reports wait4's
# ru_maxrss (its own ~10 MiB is the floor of what it can report).
LAUNCHER = """
import os, sys
pid = os.fork()
if pid == 0:
    try:
        os.execvp(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


RSS_BY = "GNU time" if os.access(GNU_TIME, os.X_OK) else "a fork/exec launcher (floor ~10 MiB)"


def _rss_wrapper(cmd: Sequence[str], rss_file: str) -> list[str]:
    """Wrap ``cmd`` so that a small intermediate process reports its peak RSS in KiB.

    ``os.wait4`` on a child of this harness is not usable for that: a forked child inherits
    the parent's RSS high-water mark through exec (Linux carries the old mm's peak into
    ``ru_maxrss``), so every child would report at least the harness's own RSS. GNU time (or
    the tiny launcher) forks the command from a small process instead.
    """
    if os.access(GNU_TIME, os.X_OK):
        return [GNU_TIME, "-f", "%M", "-o", rss_file, "--", *cmd]
    return [sys.executable, "-S", "-I", "-c", LAUNCHER, rss_file, *cmd]


def _read_rss(rss_file: str) -> int:
    try:
        lines = Path(rss_file).read_text().strip().splitlines()
        return int(lines[-1]) if lines else 0
    except (OSError, ValueError):
        return 0


def warm(path: Path) -> None:
    """Read every file under ``path`` so the operation that follows finds it in the page cache.

    Nothing can be dropped from the page cache here, and what earlier steps wrote evicts the
    source unevenly; reading it first gives every tool the same, warm, source.
    """
    buf = bytearray(8 << 20)
    view = memoryview(buf)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        with open(f, "rb", buffering=0) as fh:
            while fh.readinto(view):
                pass


def run_measured(
    cmd: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    what: str = "",
    source: Path | Sequence[Path] = (),
) -> Sample:
    """Run ``cmd`` as a child after a ``sync``; time it, then time a ``sync`` after it.

    ``source`` (the data the operation reads) is read first, untimed, so it is warm. Peak
    RSS is the command's own (with its waited-for children, e.g. ``cp`` under ``sh``).
    """
    for src in [source] if isinstance(source, Path) else source:
        warm(src)
    os.sync()
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.NamedTemporaryFile(suffix=".rss") as rss,
    ):
        wrapped = _rss_wrapper(cmd, rss.name)
        t0 = time.perf_counter()
        proc = subprocess.Popen(wrapped, stdout=out, stderr=err, env=env, cwd=cwd)
        returncode = proc.wait()
        seconds = time.perf_counter() - t0
        t1 = time.perf_counter()
        os.sync()
        sync_seconds = time.perf_counter() - t1
        maxrss = _read_rss(rss.name)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    if returncode != 0:
        tail = "\n".join(stderr.strip().splitlines()[-40:]) or "(no stderr)"
        raise BenchError(
            f"{what or 'command'} failed with exit code {returncode}\n"
            f"  command: {' '.join(map(str, cmd))}\n  stderr:\n{_indent(tail, 4)}\n"
            f"  stdout (tail):\n{_indent(chr(10).join(stdout.strip().splitlines()[-10:]), 4)}"
        )
    return Sample(seconds, sync_seconds, maxrss, stdout)


def run_quiet(cmd: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    """Run an untimed helper command; raise ``BenchError`` with its stderr on failure."""
    proc = subprocess.run(list(cmd), env=env, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-30:])
        raise BenchError(f"command failed ({proc.returncode}): {' '.join(map(str, cmd))}\n{_indent(tail, 4)}")
    return proc.stdout


def _indent(text: str, n: int) -> str:
    return "\n".join(" " * n + line for line in text.splitlines())


def du_bytes(path: Path) -> int:
    """Apparent size of a tree, as ``du -sb`` reports it (files and directories)."""
    if not path.exists():
        return 0
    out = run_quiet(["du", "-sb", str(path)])
    return int(out.split()[0])


def rmtree(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path)


def compile_package() -> None:
    """Write the package's bytecode, as installing it does: where ``PYTHONDONTWRITEBYTECODE`` is
    set (this machine's shells) a source checkout is otherwise compiled again by every CLI run,
    some 25 ms of each start that an installed package does not pay."""
    import compileall

    import weightvault

    compileall.compile_dir(str(Path(weightvault.__file__).parent), quiet=1)


def env_with(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(QUIET_ENV)
    env.update(extra)
    return env


# --------------------------------------------------------------------------------------
# results


@dataclass
class Metric:
    tool: str
    op: str
    samples: list[Sample] = field(default_factory=list)
    added: list[int] = field(default_factory=list)  # bytes added to the store/remote
    note: str = ""

    def med(self, attr: str) -> float | None:
        values = [float(getattr(s, attr)) for s in self.samples]
        return statistics.median(values) if values else None

    def added_median(self) -> int | None:
        return int(statistics.median(self.added)) if self.added else None


@dataclass
class Results:
    args: dict[str, Any]
    model: dict[str, Any] = field(default_factory=dict)
    metrics: dict[tuple[str, str], Metric] = field(default_factory=dict)
    stored: dict[str, dict[str, list[int]]] = field(default_factory=dict)  # tool -> version -> bytes
    errors: dict[str, str] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)

    def metric(self, tool: str, op: str, note: str = "") -> Metric:
        key = (tool, op)
        if key not in self.metrics:
            self.metrics[key] = Metric(tool, op, note=note)
        return self.metrics[key]

    def add_stored(self, tool: str, version: str, total: int) -> None:
        self.stored.setdefault(tool, {}).setdefault(version, []).append(total)


# --------------------------------------------------------------------------------------
# the model and its two edited versions


@dataclass
class Models:
    v1: Path
    v2: Path  # v1 with 1% of shard 1 overwritten in place
    v3: Path  # v2 with a tensor inserted into shard 2
    changed_shard: str
    changed_shard_bytes: int
    change_bytes: int
    inserted_shard: str
    inserted_shard_bytes: int
    insert_bytes: int
    header_growth: int
    total_bytes: int


def _link_tree(src: Path, dst: Path, copy: Sequence[str]) -> None:
    """dst = src with hard links, except the files named in ``copy``, which are real copies."""
    rmtree(dst)
    dst.mkdir(parents=True)
    for p in src.iterdir():
        if p.name in copy:
            shutil.copy2(p, dst / p.name)
        else:
            os.link(p, dst / p.name)


def prepare_models(
    work: Path, size: int, shards: int, change_fraction: float, insert_fraction: float
) -> Models:
    """Generate v1 (cached across invocations by a stamp) and derive v2 and v3 from it."""
    base = work / f"model-{size}-{shards}"
    stamp = base / "stamp.json"
    want = {"size": size, "shards": shards, "change": change_fraction, "insert": insert_fraction, "gen": 2}
    if stamp.exists() and json.loads(stamp.read_text()).get("params") == want:
        info: dict[str, Any] = json.loads(stamp.read_text())["models"]
        for k in ("v1", "v2", "v3"):
            info[k] = Path(info[k])
        return Models(**info)
    rmtree(base)
    v1, v2, v3 = base / "v1", base / "v2", base / "v3"
    t0 = time.perf_counter()
    generate_model(v1, size, shards=shards, dtype="bf16", seed=0)
    print(f"generated {format_size(size)} model in {time.perf_counter() - t0:.1f} s: {v1}", flush=True)
    shard_files = sorted(v1.glob("*.safetensors"))
    first = shard_files[0]
    second = shard_files[1] if len(shard_files) > 1 else shard_files[0]
    # v2: one contiguous region of `change_fraction` of shard 1 overwritten in place
    _link_tree(v1, v2, copy=[first.name])
    region = change_one_tensor(v2 / first.name, fraction=change_fraction, seed=1)
    # v3: v2 plus a tensor of `insert_fraction` of shard 2's size inserted in its middle
    _link_tree(v2, v3, copy=[second.name, "model.safetensors.index.json"])
    second_size = (v3 / second.name).stat().st_size
    ins = insert_tensor(v3 / second.name, int(second_size * insert_fraction), seed=2)
    models = Models(
        v1=v1,
        v2=v2,
        v3=v3,
        changed_shard=first.name,
        changed_shard_bytes=first.stat().st_size,
        change_bytes=region.length,
        inserted_shard=second.name,
        inserted_shard_bytes=second_size,
        insert_bytes=ins.length,
        header_growth=ins.header_growth,
        total_bytes=sum(p.stat().st_size for p in v1.iterdir()),
    )
    info = {k: (str(v) if isinstance(v, Path) else v) for k, v in models.__dict__.items()}
    stamp.write_text(json.dumps({"params": want, "models": info}, indent=2))
    os.sync()
    return models


def same_tree(a: Path, b: Path) -> bool:
    """Byte-for-byte comparison of two folders (names, sizes, contents)."""
    import filecmp

    names_a = sorted(p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file())
    names_b = sorted(p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file())
    if names_a != names_b:
        return False
    return all(filecmp.cmp(a / n, b / n, shallow=False) for n in names_a)


# --------------------------------------------------------------------------------------
# reference


def bench_reference(res: Results, models: Models, work: Path, runs: int) -> None:
    m = res.metric("reference", "cp -r + sync")
    for i in range(runs):
        dst = work / "ref-copy"
        rmtree(dst)
        s = run_measured(["cp", "-r", str(models.v1), str(dst)], what="cp -r", source=models.v1)
        m.samples.append(s)
        print(f"  reference run {i + 1}: cp -r {s.seconds:.2f} s + sync {s.sync_seconds:.2f} s", flush=True)
        rmtree(dst)


# --------------------------------------------------------------------------------------
# weightvault


def weightvault_cmd(explicit: str | None) -> list[str]:
    if explicit:
        return explicit.split()
    beside = Path(sys.executable).parent / "weightvault"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("weightvault")
    if found:
        return [found]
    return [sys.executable, "-m", "weightvault.cli.app"]


def store_bytes(wv: list[str], home: Path, env: dict[str, str], state: dict[str, str]) -> int:
    """Bytes of all objects in the store: ``stats --json`` if it works, else ``du -sb H/store``."""
    if state.get("stats") != "du":
        proc = subprocess.run(
            [*wv, "--home", str(home), "stats", "--json"], env=env, capture_output=True, text=True
        )
        if proc.returncode == 0:
            try:
                value = json.loads(proc.stdout)["store_bytes"]
                state["stats"] = "stats --json"
                return int(value)
            except (ValueError, KeyError, TypeError):
                pass
        print("  note: `weightvault stats --json` unavailable; measuring the store with du -sb", flush=True)
        state["stats"] = "du"
    return du_bytes(home / "store")


def bench_weightvault(res: Results, models: Models, work: Path, runs: int, wv: list[str]) -> None:
    tool = "weightvault"
    state: dict[str, str] = {}
    try:
        res.versions[tool] = run_quiet([*wv, "--version"]).strip() or "?"
    except BenchError:
        res.versions[tool] = "(no --version)"
    for i in range(runs):
        root = work / "wv" / f"run{i}"
        rmtree(root)
        home, cache = root / "home", root / "cache"
        env = env_with(WEIGHTVAULT_CACHE_DIRECTORY=str(cache))
        base = [*wv, "--home", str(home)]
        size_of_model = models.total_bytes

        s = run_measured(
            [*base, "push", MODEL_NAME, str(models.v1), "--version", "v1", "--quiet"],
            env=env,
            what="weightvault push v1",
            source=models.v1,
        )
        res.metric(tool, "push v1").samples.append(s)
        stored1 = store_bytes(wv, home, env, state)
        res.add_stored(tool, "v1", stored1)

        rmtree(cache)  # pull with an empty cache
        dest = root / "pull-cold"
        s = run_measured(
            [*base, "pull", f"{MODEL_NAME}@v1", str(dest), "--quiet"],
            env=env,
            what="weightvault pull (cold cache)",
            source=home / "store",
        )
        res.metric(tool, "pull, empty cache").samples.append(s)
        if i == 0 and not same_tree(models.v1, dest):
            raise BenchError(f"pulled tree {dest} differs from the pushed model {models.v1}")

        dest2 = root / "pull-warm"
        s = run_measured(
            [*base, "pull", f"{MODEL_NAME}@v1", str(dest2), "--quiet"],
            env=env,
            what="weightvault pull (warm cache)",
            source=[home / "store", cache],
        )
        res.metric(tool, "pull, warm cache").samples.append(s)
        if i == 0 and not same_tree(models.v1, dest2):
            raise BenchError(f"pulled tree {dest2} differs from the pushed model {models.v1}")
        rmtree(dest)
        rmtree(dest2)

        s = run_measured(
            [*base, "push", MODEL_NAME, str(models.v2), "--version", "v2", "--quiet"],
            env=env,
            what="weightvault push v2 (1% change)",
            source=models.v2,
        )
        stored2 = store_bytes(wv, home, env, state)
        m = res.metric(tool, "re-push, 1% of one shard changed")
        m.samples.append(s)
        m.added.append(stored2 - stored1)
        res.add_stored(tool, "v2", stored2 - stored1)

        s = run_measured(
            [*base, "push", MODEL_NAME, str(models.v3), "--version", "v3", "--quiet"],
            env=env,
            what="weightvault push v3 (inserted tensor)",
            source=models.v3,
        )
        stored3 = store_bytes(wv, home, env, state)
        m = res.metric(tool, "re-push, tensor inserted")
        m.samples.append(s)
        m.added.append(stored3 - stored2)
        res.add_stored(tool, "v3", stored3 - stored2)

        print(
            f"  weightvault run {i + 1}: push {res.metric(tool, 'push v1').samples[-1].seconds:.2f} s, "
            f"stored v1 {stored1 / size_of_model:.1%} of model, v2 +{format_size(stored2 - stored1)}, "
            f"v3 +{format_size(stored3 - stored2)}",
            flush=True,
        )
        rmtree(root)
    res.model["weightvault_store_bytes_source"] = state.get("stats", "?")


# --------------------------------------------------------------------------------------
# peers


def ensure_peer_venv(out: Path, name: str) -> Path | None:
    """Return the venv's bin folder, creating it and installing the peer on first use."""
    venv = out / "peers-venv" / name
    bindir = venv / "bin"
    check = {
        "dvc": [str(bindir / "dvc"), "--version"],
        "mlflow": [str(bindir / "python"), "-c", "import mlflow"],
    }
    if (bindir / "python").exists() and subprocess.run(check[name], capture_output=True).returncode == 0:
        return bindir
    print(f"  installing {name} into {venv} (first use) ...", flush=True)
    rmtree(venv)
    try:
        run_quiet([sys.executable, "-m", "venv", str(venv)])
        run_quiet([str(bindir / "python"), "-m", "pip", "install", "-q", *PEER_PACKAGES[name]])
        run_quiet(check[name])
    except BenchError as exc:
        print(f"  SKIPPING {name}: its install failed:\n{_indent(str(exc), 4)}", flush=True)
        return None
    return bindir


def bench_dvc(res: Results, models: Models, work: Path, runs: int, bindir: Path) -> None:
    tool = "DVC"
    dvc = str(bindir / "dvc")
    env = env_with()
    res.versions[tool] = run_quiet([dvc, "--version"], env=env).strip()

    def init_project(path: Path, remote: Path) -> None:
        path.mkdir(parents=True)
        run_quiet([dvc, "init", "--no-scm", "-q"], env=env, cwd=path)
        run_quiet([dvc, "config", "core.check_update", "false"], env=env, cwd=path)
        run_quiet([dvc, "remote", "add", "-d", "local", str(remote)], env=env, cwd=path)

    for i in range(runs):
        root = work / "dvc" / f"run{i}"
        rmtree(root)
        proj, remote = root / "project", root / "remote"
        remote.mkdir(parents=True)
        init_project(proj, remote)
        shutil.copytree(models.v1, proj / "model")  # the workspace copy (not timed)

        def add_push(label: str, proj: Path = proj) -> tuple[Sample, Sample]:
            a = run_measured(
                [dvc, "add", "-q", "model"],
                env=env,
                cwd=proj,
                what=f"dvc add ({label})",
                source=proj / "model",
            )
            p = run_measured(
                [dvc, "push", "-q"],
                env=env,
                cwd=proj,
                what=f"dvc push ({label})",
                source=proj / ".dvc" / "cache",
            )
            return a, p

        a, p = add_push("v1")
        _record_pair(res, tool, "push v1", a, p)
        stored1 = du_bytes(remote)
        res.add_stored(tool, "v1", stored1)

        # fresh clone: same .dvc metadata, empty cache
        clone = root / "clone"
        init_project(clone, remote)
        shutil.copy2(proj / "model.dvc", clone / "model.dvc")
        s = run_measured(
            [dvc, "pull", "-q"], env=env, cwd=clone, what="dvc pull (empty cache)", source=remote
        )
        res.metric(tool, "pull, empty cache").samples.append(s)
        if i == 0 and not same_tree(models.v1, clone / "model"):
            raise BenchError("dvc pull produced a different tree")
        # second clone sharing the first clone's (now warm) cache
        clone2 = root / "clone-warm"
        init_project(clone2, remote)
        run_quiet([dvc, "cache", "dir", "--local", str(clone / ".dvc" / "cache")], env=env, cwd=clone2)
        shutil.copy2(proj / "model.dvc", clone2 / "model.dvc")
        s = run_measured(
            [dvc, "pull", "-q"],
            env=env,
            cwd=clone2,
            what="dvc pull (warm cache)",
            source=clone / ".dvc" / "cache",
        )
        res.metric(tool, "pull, warm cache").samples.append(s)
        rmtree(clone)
        rmtree(clone2)

        # v2: the changed shard replaces the workspace file, as an in-place edit would
        shutil.copy2(models.v2 / models.changed_shard, proj / "model" / models.changed_shard)
        a, p = add_push("v2")
        stored2 = du_bytes(remote)
        m = _record_pair(res, tool, "re-push, 1% of one shard changed", a, p)
        m.added.append(stored2 - stored1)
        res.add_stored(tool, "v2", stored2 - stored1)

        for name in (models.inserted_shard, "model.safetensors.index.json"):
            shutil.copy2(models.v3 / name, proj / "model" / name)
        a, p = add_push("v3")
        stored3 = du_bytes(remote)
        m = _record_pair(res, tool, "re-push, tensor inserted", a, p)
        m.added.append(stored3 - stored2)
        res.add_stored(tool, "v3", stored3 - stored2)
        print(
            f"  DVC run {i + 1}: add+push {res.metric(tool, 'push v1').samples[-1].seconds:.2f} s, "
            f"v2 +{format_size(stored2 - stored1)}, v3 +{format_size(stored3 - stored2)}",
            flush=True,
        )
        rmtree(root)


def _record_pair(res: Results, tool: str, op: str, a: Sample, p: Sample) -> Metric:
    """Record two steps (e.g. ``dvc add`` then ``dvc push``) as one operation."""
    m = res.metric(tool, op, note="add + push")
    m.samples.append(
        Sample(a.seconds + p.seconds, a.sync_seconds + p.sync_seconds, max(a.maxrss_kib, p.maxrss_kib))
    )
    return m


MLFLOW_LOG = """
import sys, mlflow
mlflow.set_tracking_uri(sys.argv[1])
mlflow.set_experiment("bench")
with mlflow.start_run(run_name=sys.argv[3]) as run:
    mlflow.log_artifacts(sys.argv[2], artifact_path="model")
print(run.info.run_id)
"""

MLFLOW_GET = """
import sys, mlflow
mlflow.set_tracking_uri(sys.argv[1])
mlflow.artifacts.download_artifacts(run_id=sys.argv[2], artifact_path="model", dst_path=sys.argv[3])
"""


def bench_mlflow(res: Results, models: Models, work: Path, runs: int, bindir: Path) -> None:
    tool = "MLflow"
    py = str(bindir / "python")
    env = env_with()
    res.versions[tool] = run_quiet([py, "-c", "import mlflow; print(mlflow.__version__)"], env=env).strip()
    for i in range(runs):
        root = work / "mlflow" / f"run{i}"
        rmtree(root)
        store = root / "mlruns"
        store.mkdir(parents=True)
        uri = store.as_uri()

        s = run_measured(
            [py, "-c", MLFLOW_LOG, uri, str(models.v1), "v1"],
            env=env,
            cwd=root,
            what="mlflow log_artifacts v1",
            source=models.v1,
        )
        run_id = s.stdout.strip().splitlines()[-1]
        res.metric(tool, "push v1", note="log_artifacts").samples.append(s)
        stored1 = du_bytes(store)
        res.add_stored(tool, "v1", stored1)

        dest = root / "download"
        s = run_measured(
            [py, "-c", MLFLOW_GET, uri, run_id, str(dest)],
            env=env,
            cwd=root,
            what="mlflow download_artifacts",
            source=store,
        )
        res.metric(tool, "pull, empty cache", note="download_artifacts").samples.append(s)
        if i == 0 and not same_tree(models.v1, dest / "model"):
            raise BenchError("mlflow download produced a different tree")
        rmtree(dest)

        s = run_measured(
            [py, "-c", MLFLOW_LOG, uri, str(models.v2), "v2"],
            env=env,
            cwd=root,
            what="mlflow log_artifacts v2",
            source=models.v2,
        )
        stored2 = du_bytes(store)
        m = res.metric(tool, "re-push, 1% of one shard changed", note="log_artifacts")
        m.samples.append(s)
        m.added.append(stored2 - stored1)
        res.add_stored(tool, "v2", stored2 - stored1)

        s = run_measured(
            [py, "-c", MLFLOW_LOG, uri, str(models.v3), "v3"],
            env=env,
            cwd=root,
            what="mlflow log_artifacts v3",
            source=models.v3,
        )
        stored3 = du_bytes(store)
        m = res.metric(tool, "re-push, tensor inserted", note="log_artifacts")
        m.samples.append(s)
        m.added.append(stored3 - stored2)
        res.add_stored(tool, "v3", stored3 - stored2)
        print(
            f"  MLflow run {i + 1}: log {res.metric(tool, 'push v1').samples[-1].seconds:.2f} s, "
            f"v2 +{format_size(stored2 - stored1)}, v3 +{format_size(stored3 - stored2)}",
            flush=True,
        )
        rmtree(root)


# --------------------------------------------------------------------------------------
# report


OP_ORDER = [
    "cp -r + sync",
    "push v1",
    "pull, empty cache",
    "pull, warm cache",
    "re-push, 1% of one shard changed",
    "re-push, tensor inserted",
]
TOOL_ORDER = ["reference", "weightvault", "DVC", "MLflow"]


def _mib(n: float | None) -> str:
    return "" if n is None else f"{n / 1024:.0f}"


def _spread(values: list[float]) -> str:
    return f"{min(values):.2f}..{max(values):.2f}" if len(values) > 1 else ""


def table_rows(res: Results, models: Models) -> list[list[str]]:
    ref = res.metrics.get(("reference", "cp -r + sync"))
    ref_durable = ref.med("durable") if ref else None
    rows = []
    keys = sorted(
        res.metrics,
        key=lambda k: (TOOL_ORDER.index(k[0]) if k[0] in TOOL_ORDER else 99, OP_ORDER.index(k[1])),
    )
    for key in keys:
        m = res.metrics[key]
        if not m.samples:
            continue
        op_s, sync_s, durable = m.med("seconds"), m.med("sync_seconds"), m.med("durable")
        assert op_s is not None and sync_s is not None and durable is not None
        ratio = f"{durable / ref_durable:.2f}x" if ref_durable else ""
        added = m.added_median()
        added_s, pct = "", ""
        if added is not None:
            added_s = format_size(added)
            shard = models.changed_shard_bytes if "1%" in m.op else models.inserted_shard_bytes
            pct = f"{added / shard:.1%}"
        throughput = (
            f"{models.total_bytes / durable / (1 << 20):.0f}"
            if "v1" in m.op or "pull" in m.op or m.tool == "reference"
            else ""
        )
        rows.append(
            [
                m.tool,
                m.op + (f" ({m.note})" if m.note else ""),
                f"{op_s:.2f}",
                f"{sync_s:.2f}",
                f"{durable:.2f}",
                _spread([s.durable for s in m.samples]),
                ratio,
                throughput,
                _mib(m.med("maxrss_kib")),
                added_s,
                pct,
            ]
        )
    return rows


HEADERS = [
    "tool",
    "operation",
    "op s",
    "+sync s",
    "durable s",
    "durable min..max",
    "vs cp -r+sync",
    "MiB/s",
    "peak RSS MiB",
    "bytes added",
    "% of shard",
]


def stored_rows(res: Results, models: Models) -> list[list[str]]:
    rows = []
    for tool in TOOL_ORDER:
        if tool not in res.stored:
            continue
        per = res.stored[tool]
        cells = [tool]
        for version in ("v1", "v2", "v3"):
            vals = per.get(version)
            if not vals:
                cells.append("")
                continue
            med = int(statistics.median(vals))
            base = (
                models.total_bytes
                if version == "v1"
                else (models.changed_shard_bytes if version == "v2" else models.inserted_shard_bytes)
            )
            label = "model" if version == "v1" else "shard"
            cells.append(f"{format_size(med)} ({med / base:.1%} of {label})")
        rows.append(cells)
    return rows


def markdown(res: Results, models: Models, machine: dict[str, str]) -> str:
    def md_table(headers: list[str], rows: list[list[str]]) -> str:
        lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)

    a = res.args
    parts = [
        "# bench_core — last run",
        "",
        f"- date: {machine['date']}",
        f"- machine: {machine['cpu']}, {machine['cores']} cores, {machine['mem']} RAM, {machine['os']}",
        f"- disk: {machine['disk']}",
        f"- load average (1 min) at start / end: {machine['load_start']} / {machine.get('load_end', '?')} "
        "(other work on this 2-core machine skews timings: compare ratios from quiet runs)",
        f"- python: {machine['python']}; " + "; ".join(f"{k} {v}" for k, v in res.versions.items()),
        f"- model: {format_size(models.total_bytes)} on disk ({a['shards']} bf16 safetensors shards + "
        f"config/tokenizer), runs: {a['runs']} (medians)",
        f"- 1% change: {format_size(models.change_bytes)} contiguous in {models.changed_shard} "
        f"({format_size(models.changed_shard_bytes)}); "
        f"insert: {format_size(models.insert_bytes)} tensor into the middle of {models.inserted_shard} "
        f"(header +{models.header_growth} B, later bytes shift)",
        "- timing: the data each operation reads is read once before it (warm page cache, nothing "
        "dropped) and `sync` runs before it (untimed); `+sync` = a `sync` timed right after it; "
        "ratios are (op + sync) / (cp -r + sync) measured in the same invocation; peak RSS = the "
        f"command's own ru_maxrss, taken by {RSS_BY}",
        "- each column is its own median over the runs (so `durable` need not equal `op` + `+sync`); "
        "`bytes added` = growth of the store/remote on that re-push; `% of shard` = bytes added / size "
        "of the edited shard (a tool that stores whole files adds >= 100%; MLflow logs every file "
        "again, so it adds the whole model); MLflow has no local cache, hence no warm pull row",
        f"- weightvault store bytes from: {res.model.get('weightvault_store_bytes_source', 'n/a')}; "
        "DVC: du -sb of the local remote; MLflow: du -sb of the file store",
        "",
        md_table(HEADERS, table_rows(res, models)),
        "",
        "Bytes stored per version (median; v2 and v3 are what each re-push added):",
        "",
        md_table(["tool", "v1", "v2 (1% change)", "v3 (inserted tensor)"], stored_rows(res, models)),
    ]
    if res.errors:
        parts += ["", "Errors:", ""]
        parts += [f"- {k}: {v.splitlines()[0]}" for k, v in res.errors.items()]
    return "\n".join(parts) + "\n"


def print_table(res: Results, models: Models) -> None:
    rows = table_rows(res, models)
    srows = stored_rows(res, models)
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(HEADERS)]
        print("  ".join(h.ljust(w) for h, w in zip(HEADERS, widths, strict=True)))
        for r in rows:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
        for r in srows:
            print("  ".join(r))
        return
    console = Console(width=200)
    table = Table(title=f"bench_core: {format_size(models.total_bytes)}, medians of {res.args['runs']} runs")
    for i, h in enumerate(HEADERS):
        table.add_column(h, justify="left" if i < 2 else "right")
    for r in rows:
        table.add_row(*r)
    console.print(table)
    stored = Table(title="bytes stored per version")
    for h in ["tool", "v1", "v2 (1% change)", "v3 (inserted tensor)"]:
        stored.add_column(h)
    for r in srows:
        stored.add_row(*r)
    console.print(stored)


def machine_info(work: Path) -> dict[str, str]:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kib / (1 << 20):.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    disk = "?"
    try:
        disk = run_quiet(["df", "-hT", str(work)]).splitlines()[-1]
        disk = " ".join(disk.split())
    except (BenchError, IndexError):
        pass
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "mem": mem,
        "os": f"{platform.system()} {platform.release()}",
        "disk": disk,
        "python": platform.python_version(),
        "load_start": f"{os.getloadavg()[0]:.2f}",
    }


# --------------------------------------------------------------------------------------
# main


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--size", default="2GiB", help="weight bytes of the synthetic model (default 2GiB)")
    parser.add_argument("--shards", type=int, default=4, help="safetensors shards (default 4)")
    parser.add_argument("--runs", type=int, default=3, help="runs per measurement; medians are reported")
    parser.add_argument("--out", type=Path, default=HERE / "out", help="work folder, same disk (bench/out)")
    parser.add_argument("--only", choices=["weightvault", "peers", "all"], default="all")
    parser.add_argument("--peers", default="dvc,mlflow", help="comma-separated peers (default dvc,mlflow)")
    parser.add_argument("--change-fraction", type=float, default=0.01, help="share of shard 1 overwritten")
    parser.add_argument("--insert-fraction", type=float, default=0.01, help="inserted tensor / shard 2 size")
    parser.add_argument("--weightvault", default=None, help="command to run the CLI (default: beside python)")
    args = parser.parse_args(argv)

    size = parse_size(args.size)
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = out / "work"
    work.mkdir(exist_ok=True)
    res = Results(args={**vars(args), "out": str(out), "size_bytes": size})
    machine = machine_info(out)

    print(f"preparing the model ({format_size(size)}, {args.shards} shards) in {out} ...", flush=True)
    models = prepare_models(out, size, args.shards, args.change_fraction, args.insert_fraction)
    res.model.update({k: (str(v) if isinstance(v, Path) else v) for k, v in models.__dict__.items()})

    print("reference: cp -r + sync", flush=True)
    bench_reference(res, models, work, args.runs)

    sections: list[tuple[str, Callable[[], None]]] = []
    if args.only in ("weightvault", "all"):
        wv = weightvault_cmd(args.weightvault)
        sections.append(("weightvault", lambda: bench_weightvault(res, models, work, args.runs, wv)))
    if args.only in ("peers", "all"):
        wanted = [p.strip().lower() for p in args.peers.split(",") if p.strip()]
        for peer in wanted:
            if peer not in PEER_PACKAGES:
                parser.error(f"unknown peer {peer!r} (known: {', '.join(PEER_PACKAGES)})")

            def run_peer(peer: str = peer) -> None:
                bindir = ensure_peer_venv(out, peer)
                if bindir is None:
                    res.errors[peer] = f"skipped: could not install {peer}"
                    return
                (bench_dvc if peer == "dvc" else bench_mlflow)(res, models, work, args.runs, bindir)

            sections.append((peer, run_peer))

    for name, fn in sections:
        print(f"{name}:", flush=True)
        try:
            fn()
        except BenchError as exc:
            res.errors[name] = str(exc)
            print(f"ERROR in the {name} part:\n{_indent(str(exc), 2)}", file=sys.stderr, flush=True)
        finally:
            rmtree(work / name.lower())
            if name == "weightvault":
                rmtree(work / "wv")

    machine["load_end"] = f"{os.getloadavg()[0]:.2f}"
    print_table(res, models)
    text = markdown(res, models, machine)
    (out / "last_core.md").write_text(text)
    dump = {
        "machine": machine,
        "args": res.args,
        "model": res.model,
        "versions": res.versions,
        "errors": res.errors,
        "metrics": [
            {
                "tool": m.tool,
                "op": m.op,
                "note": m.note,
                "seconds": [s.seconds for s in m.samples],
                "sync_seconds": [s.sync_seconds for s in m.samples],
                "maxrss_kib": [s.maxrss_kib for s in m.samples],
                "bytes_added": m.added,
            }
            for m in res.metrics.values()
        ],
        "stored": res.stored,
    }
    (out / "last_core.json").write_text(json.dumps(dump, indent=2))
    print(f"wrote {out / 'last_core.md'} and {out / 'last_core.json'}")
    if res.errors:
        print(
            "errors: " + "; ".join(f"{k}: {v.splitlines()[0]}" for k, v in res.errors.items()),
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
