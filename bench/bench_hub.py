#!/usr/bin/env python
"""Hub endpoint benchmark: ``snapshot_download`` of a synthetic model from the vault server, the
same client against a minimal static Hub mirror, and curl from nginx as the ceiling.

Setup (untimed): a synthetic checkpoint (default 2 GiB, ``weightvault.demo.synthetic``) is
pushed to a fresh home and ``weightvault serve`` runs on it. The minimal mirror is a few lines
of Starlette on the same uvicorn answering the routes ``snapshot_download`` uses (revision info,
tree, HEAD/GET resolve) from the plain files on disk, with the SHA-256s computed beforehand: the
difference between the two is the vault server's own cost (lookups, access checks, reading and
checking chunks). curl fetches the same files from nginx (Debian's nginx-light) into a folder:
the client-side ceiling. Every timed run downloads into a fresh cache folder; the client runs in
its own process and times only the ``snapshot_download`` call. Medians over ``--runs``.

    .venv/bin/python bench/bench_hub.py                      # 2 GiB, 3 runs
    .venv/bin/python bench/bench_hub.py --size 512MiB --runs 3

Prints a table and writes ``OUT/last_hub.md`` and ``OUT/last_hub.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from weightvault.demo.synthetic import format_size, generate_model, parse_size
from weightvault.testing.server import ServerProcess, free_port
from weightvault.vault.vault import Vault

HERE = Path(__file__).resolve().parent
REPO = "bench/hub"

MIRROR = r"""
import hashlib, json, sys
from pathlib import Path
import uvicorn
from starlette.applications import Starlette
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

root, port, commit = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
files = {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}
sha = json.loads(Path(sys.argv[4]).read_text())

def info(request):
    return JSONResponse({"id": request.path_params["repo"], "sha": commit,
                         "siblings": [{"rfilename": f} for f in files]})

def tree(request):
    return JSONResponse([{"type": "file", "path": f, "size": p.stat().st_size, "oid": sha[f][:40],
                          "lfs": {"oid": sha[f], "size": p.stat().st_size, "pointerSize": 130}}
                         for f, p in files.items()])

def resolve(request):
    f = request.path_params["path"]
    headers = {"X-Repo-Commit": commit, "ETag": f'"{sha[f]}"'}
    if request.method == "HEAD":
        headers["Content-Length"] = str(files[f].stat().st_size)
        return Response(headers=headers)
    return FileResponse(files[f], headers=headers)

app = Starlette(routes=[
    Route("/api/models/{repo:path}/revision/{rev}", info),
    Route("/api/models/{repo:path}/tree/{rev}", tree),
    Route("/{repo:path}/resolve/{rev}/{path:path}", resolve, methods=["GET", "HEAD"]),
])
uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
"""

CLIENT = r"""
import json, os, sys, time
import huggingface_hub as hh
t = time.perf_counter()
path = hh.snapshot_download(sys.argv[1], cache_dir=sys.argv[2])
print(json.dumps({"seconds": time.perf_counter() - t, "path": path}))
"""


def _wait(url: str, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(600):
        if proc.poll() is not None:
            raise RuntimeError(f"{url} exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not start")


def snapshot(endpoint: str, token: str | None, cache: Path) -> tuple[float, Path]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "WEIGHTVAULT_"))}
    env.update(
        HF_ENDPOINT=endpoint,
        HF_HOME=str(cache / "home"),
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
    )
    if token:
        env["HF_TOKEN"] = token
    out = subprocess.run(
        [sys.executable, "-c", CLIENT, REPO, str(cache)], env=env, capture_output=True, text=True, check=True
    )
    res = json.loads(out.stdout.strip().splitlines()[-1])
    return float(res["seconds"]), Path(res["path"])


def nginx(root: Path, work: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    conf = work / "nginx.conf"
    kinds = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    temps = " ".join(f"{k}_temp_path {work};" for k in kinds)
    conf.write_text(
        ("user root; " if os.geteuid() == 0 else "")
        + f"daemon off; worker_processes 2; pid {work}/nginx.pid; error_log {work}/error.log;\n"
        "events { worker_connections 1024; }\n"
        f"http {{ access_log off; sendfile on; tcp_nopush on; {temps}\n"
        f"  server {{ listen 127.0.0.1:{port}; root {root}; }} }}\n"
    )
    nginx_bin = shutil.which("nginx") or "/usr/sbin/nginx"
    proc = subprocess.Popen([nginx_bin, "-c", str(conf), "-p", str(work)], stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    _wait(url + "/", proc)
    return proc, url


def machine() -> dict[str, str]:
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": str(os.cpu_count()),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "load": " ".join(f"{x:.1f}" for x in os.getloadavg()),
    }


def bench(size: int, runs: int, work: Path) -> dict[str, Any]:
    src = work / "model"
    generate_model(src, size, shards=4)
    files = sorted(p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file())
    total = sum((src / f).stat().st_size for f in files)
    home = work / "home"
    with Vault.open(home) as v:
        token = v.access.create_token("bench", "admin", admin=True).token
        commit = v.push(REPO, src, version="v1").version.commit
        sha = {f.path: f.sha256 for f in v.show(f"{REPO}@v1").files}
    (work / "sha.json").write_text(json.dumps(sha))
    (work / "mirror.py").write_text(MIRROR)
    mport = free_port()
    mirror = subprocess.Popen(
        [sys.executable, str(work / "mirror.py"), str(src), str(mport), commit, str(work / "sha.json")]
    )
    ngx_work = work / "nginx"
    ngx_work.mkdir()
    ngx, ngx_url = nginx(src, ngx_work)
    times: dict[str, list[float]] = {"vault server": [], "minimal mirror": [], "curl from nginx": []}
    try:
        _wait(f"http://127.0.0.1:{mport}/api/models/{REPO}/revision/main", mirror)
        with ServerProcess(home, env={"WEIGHTVAULT_GC_GRACE_SECONDS": "0"}) as server:
            for i in range(runs):
                for name, endpoint, tok in (
                    ("vault server", server.url, token),
                    ("minimal mirror", f"http://127.0.0.1:{mport}", None),
                ):
                    cache = work / f"cache-{i}-{name.split()[0]}"
                    seconds, path = snapshot(endpoint, tok, cache)
                    if i == 0:  # check the bytes once per source (untimed)
                        for f in files:
                            h = hashlib.sha256((path / f).read_bytes()).hexdigest()
                            if h != sha[f]:
                                raise RuntimeError(f"{name}: {f} differs")
                    times[name].append(seconds)
                    shutil.rmtree(cache)
                dest = work / f"curl-{i}"
                dest.mkdir()
                argv = ["curl", "-s", "--fail"]
                for f in files:
                    (dest / f).parent.mkdir(parents=True, exist_ok=True)
                    argv += ["-o", str(dest / f), f"{ngx_url}/{f}"]
                t = time.perf_counter()
                subprocess.run(argv, check=True)
                times["curl from nginx"].append(time.perf_counter() - t)
                shutil.rmtree(dest)
    finally:
        mirror.terminate()
        mirror.wait(timeout=20)
        ngx.terminate()
        ngx.wait(timeout=20)
    medians = {k: statistics.median(v) for k, v in times.items()}
    return {
        "machine": machine(),
        "size": total,
        "files": len(files),
        "runs": runs,
        "times": times,
        "median": medians,
        "ratio_vs_mirror": {k: medians[k] / medians["minimal mirror"] for k in medians},
    }


def markdown(res: dict[str, Any]) -> str:
    m = res["machine"]
    lines = [
        f"snapshot_download of {format_size(res['size'])} ({res['files']} files), "
        f"median of {res['runs']} runs, {m['date']}, {m['cpus']} CPUs, load {m['load']}",
        "",
        "| source | median s | MiB/s | x minimal mirror |",
        "| --- | ---: | ---: | ---: |",
    ]
    for k, s in res["median"].items():
        rate = res["size"] / s / (1 << 20)
        lines.append(f"| {k} | {s:.2f} | {rate:.0f} | {res['ratio_vs_mirror'][k]:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="2GiB")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", type=Path, default=HERE / "out")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="wv-bench-hub-"))
    try:
        res = bench(parse_size(args.size), args.runs, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = markdown(res)
    print(text)
    (args.out / "last_hub.md").write_text(text)
    (args.out / "last_hub.json").write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
