#!/usr/bin/env python
"""Server benchmark: pull throughput over loopback with 1, 4 and 16 concurrent clients against a
static web server serving the same files from disk, and remote push against embedded push.

Setup (untimed): a synthetic checkpoint (default 2 GiB, ``weightvault.demo.synthetic``) is
pushed to a fresh home; ``weightvault serve`` runs on it; the static references serve the
source folder itself: nginx (Debian's nginx-light, if installed) and Python's ``http.server``
(the floor). Each client is its own process (so client CPU is not one GIL) that downloads
every file of the version once and discards the bytes:

* weightvault: ``GET /api/v1/models/M/-/versions/V/files/P`` read by the pull's own receiving
  code (``weightvault.client.receive``), SHA-256 of every file checked against the manifest on
  a second thread; like the pull, it sends ``X-Weightvault-Client-Verifies: sha256``, so the
  server skips its per-chunk BLAKE3 ("weightvault, server checks": without the header, the
  server checks every chunk as every other client gets it);
* static: the same files by URL, read by the same code, not hashed ("best static" is the faster
  of nginx and http.server); with one client also "nginx, client hashes" (what verifying alone
  costs) and "weightvault, httpx client" (the client before ``receive``).

Throughput = bytes delivered to all clients / wall time until the last one finishes; a run
"loses" a request when a client sees an error or a short body. Medians over ``--runs``.
Push: ``RemoteVault.push`` into a fresh served home vs ``Vault.push`` into a fresh home.

    .venv/bin/python bench/bench_server.py                       # 2 GiB, 3 runs
    .venv/bin/python bench/bench_server.py --size 256MiB --runs 1 --clients 1,4

Prints a table and writes ``OUT/last_server.md`` and ``OUT/last_server.json``.
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

from weightvault import Vault
from weightvault.client import receive
from weightvault.client.http import error_of
from weightvault.core.errors import WeightvaultError
from weightvault.core.headers import CLIENT_VERIFIES, CLIENT_VERIFIES_SHA256
from weightvault.demo.synthetic import format_size, generate_model, parse_size
from weightvault.testing.server import ServerProcess, free_port

HERE = Path(__file__).resolve().parent
MODEL = "bench/served"
BLOCK = 1 << 20


# ---- one client (run as a child process: ``bench_server.py --client SPEC``) -----------------------


def client_main(spec: dict[str, Any]) -> int:
    """Download every file once; print JSON {bytes, errors, start, end}.

    ``spec["client"]``: ``receive`` is the pull's own receiving path (``weightvault.client.receive``:
    1 MiB socket reads, SHA-256 on a second thread); ``httpx`` the earlier one (httpx stream,
    SHA-256 inline), kept as the "before" row. Static servers are read with the same code, unhashed
    unless ``verify`` is set.
    """
    headers = {"Authorization": f"Bearer {spec['token']}"} if spec.get("token") else {}
    headers.update(spec.get("headers", {}))
    total = errors = 0
    started = time.time()
    with httpx.Client(headers=headers, timeout=600) as client:
        for f in spec["files"]:
            h = hashlib.sha256() if spec["verify"] else None
            n = 0
            try:
                if spec.get("client", "receive") == "receive":
                    update = h.update if h is not None else (lambda b: None)
                    n = receive.get(f["url"], headers, update, error_of).size
                else:
                    with client.stream("GET", f["url"]) as r:
                        if r.status_code != 200:
                            errors += 1
                            continue
                        for block in r.iter_bytes(BLOCK):
                            n += len(block)
                            if h is not None:
                                h.update(block)
            except (httpx.HTTPError, WeightvaultError):
                errors += 1
                continue
            if n != f["size"] or (h is not None and h.hexdigest() != f["sha256"]):
                errors += 1
            total += n
    print(json.dumps({"bytes": total, "errors": errors, "start": started, "end": time.time()}))
    return 0


def run_clients(spec: dict[str, Any], n: int) -> tuple[float, int, int]:
    """(seconds, bytes, errors) for ``n`` concurrent client processes."""
    blob = json.dumps(spec)
    procs = [
        subprocess.Popen([sys.executable, __file__, "--client", blob], stdout=subprocess.PIPE, text=True)
        for _ in range(n)
    ]
    outs = [p.communicate(timeout=3600)[0] for p in procs]
    results = [json.loads(o.strip().splitlines()[-1]) for o in outs]
    # from the first client's first request to the last client's last byte (interpreter start-up excluded)
    seconds = max(r["end"] for r in results) - min(r["start"] for r in results)
    return seconds, sum(r["bytes"] for r in results), sum(r["errors"] for r in results)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---- the static references --------------------------------------------------------------------------


class Static:
    def __init__(self, kind: str, root: Path, work: Path) -> None:
        self.kind = kind
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.work = work / kind
        self.work.mkdir(parents=True, exist_ok=True)
        if kind == "nginx":
            conf = self.work / "nginx.conf"
            w = self.work
            kinds = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
            temps = " ".join(f"{k}_temp_path {w};" for k in kinds)
            conf.write_text(
                ("user root; " if os.geteuid() == 0 else "")
                + f"daemon off; worker_processes 2; pid {w}/nginx.pid; error_log {w}/error.log;\n"
                "events { worker_connections 1024; }\n"
                f"http {{ access_log off; sendfile on; tcp_nopush on; {temps}\n"
                f"  server {{ listen 127.0.0.1:{self.port}; root {root}; }} }}\n"
            )
            argv = [shutil.which("nginx") or "nginx", "-c", str(conf), "-p", str(self.work)]
        else:
            argv = [
                sys.executable,
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                "--directory",
                str(root),
                str(self.port),
            ]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(300):
            try:
                httpx.get(self.url + "/", timeout=1)
                return
            except httpx.TransportError:
                time.sleep(0.05)
        raise RuntimeError(f"{kind} did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=20)


# ---- the benchmark ---------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": str(os.cpu_count()),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def bench(size: int, runs: int, clients: Sequence[int], out: Path, work: Path) -> dict[str, Any]:
    src = work / "model"
    generate_model(src, size)
    files = sorted(p for p in src.rglob("*") if p.is_file())
    total = sum(p.stat().st_size for p in files)
    home = work / "home"
    results: dict[str, Any] = {
        "size": total,
        "files": len(files),
        "machine": machine(),
        "pull": {},
        "push": {},
    }

    push_embedded, push_remote = [], []
    for r in range(runs):
        h = work / f"push-embedded-{r}"
        with Vault.open(h) as v:
            t = time.perf_counter()
            v.push(MODEL, src, version="v1")
            push_embedded.append(time.perf_counter() - t)
        shutil.rmtree(h)
    with Vault.open(home) as v:
        v.push(MODEL, src, version="v1")
        token = v.access.create_token("bench", "admin", admin=True).token
        manifest = {f.path: f for f in v.show(f"{MODEL}@v1").files}

    statics = []
    if shutil.which("nginx"):
        statics.append("nginx")
    statics.append("http.server")
    with ServerProcess(home) as server:
        for r in range(runs):
            h = work / f"push-remote-{r}"
            with Vault.open(h) as v:
                v.access.create_token("bench", "admin", admin=True)
            with ServerProcess(h) as fresh, Vault.open(h) as local:
                tok = local.access.create_token("pusher", "admin", admin=True).token
                with Vault.open(fresh.url, token=tok) as remote:
                    t = time.perf_counter()
                    remote.push(MODEL, src, version="v1")
                    push_remote.append(time.perf_counter() - t)
            shutil.rmtree(h)
        wv_spec = {
            "token": token,
            "verify": True,
            "files": [
                {
                    "url": f"{server.url}/api/v1/models/{MODEL}/-/versions/v1/files/{path}",
                    "size": e.size,
                    "sha256": e.sha256,
                }
                for path, e in sorted(manifest.items())
            ],
        }
        servers: dict[str, Any] = {}
        for kind in statics:
            servers[kind] = Static(kind, src, work)
        try:
            for n in clients:
                row: dict[str, Any] = {}
                names = ["weightvault", *statics]
                if n == 1:  # the server's own check, the earlier client, what hashing alone costs
                    names += [
                        "weightvault, server checks",
                        "weightvault, httpx client",
                        *(f"{k}, client hashes" for k in statics[:1]),
                    ]
                for name in names:
                    if name.startswith("weightvault"):
                        skip = name == "weightvault"  # what the pull sends: it checks the SHA-256
                        spec = {
                            **wv_spec,
                            "client": "httpx" if "httpx" in name else "receive",
                            "headers": {CLIENT_VERIFIES: CLIENT_VERIFIES_SHA256} if skip else {},
                        }
                    else:
                        kind = name.split(",")[0]
                        base = servers[kind].url
                        spec = {
                            "verify": name.endswith("hashes"),
                            "files": [
                                {"url": f"{base}/{p}", "size": manifest[p].size, "sha256": manifest[p].sha256}
                                for p in sorted(manifest)
                            ],
                        }
                    load_before = os.getloadavg()[0]
                    cpu_before = cpu_seconds(server.proc.pid) if server.proc else 0.0
                    samples = [run_clients(spec, n) for _ in range(runs)]
                    cpu = (cpu_seconds(server.proc.pid) if server.proc else 0.0) - cpu_before
                    secs = [s for s, _, _ in samples]
                    row[name] = {
                        "seconds_median": statistics.median(secs),
                        "mb_per_s_median": statistics.median(b / s / 1e6 for s, b, _ in samples),
                        "runs": [{"seconds": s, "bytes": b, "errors": e} for s, b, e in samples],
                        "errors": sum(e for _, _, e in samples),
                        "expected_bytes": n * total,
                        "bytes_ok": all(b == n * total for _, b, _ in samples),
                        "load": [round(load_before, 1), round(os.getloadavg()[0], 1)],
                    }
                    if name.startswith("weightvault"):  # less noisy than time on a shared machine
                        delivered = sum(b for _, b, _ in samples)
                        row[name]["server_cpu_s_per_gb"] = cpu / (delivered / 1e9) if delivered else 0.0
                results["pull"][str(n)] = row
        finally:
            for s in servers.values():
                s.stop()
    results["push"] = {
        "embedded_seconds_median": statistics.median(push_embedded),
        "remote_seconds_median": statistics.median(push_remote),
        "embedded_mb_per_s": total / statistics.median(push_embedded) / 1e6,
        "remote_mb_per_s": total / statistics.median(push_remote) / 1e6,
    }
    return results


def markdown(res: dict[str, Any]) -> str:
    m = res["machine"]
    lines = [
        f"Server pull/push, {format_size(res['size'])} synthetic checkpoint ({res['files']} files), "
        f"{m['cpus']} CPUs, Python {m['python']}, {m['date']}",
        "",
        "| clients | server (client) | MB/s (median) | vs best static | errors | all bytes | load 1-min "
        "| server CPU s/GB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for n, row in res["pull"].items():
        best = max(v["mb_per_s_median"] for k, v in row.items() if k in ("nginx", "http.server"))
        for name, v in row.items():
            ratio = f"{v['mb_per_s_median'] / best:.2f}" if name not in ("nginx", "http.server") else ""
            load = " to ".join(str(x) for x in v.get("load", []))
            cpu = f"{v['server_cpu_s_per_gb']:.2f}" if "server_cpu_s_per_gb" in v else ""
            lines.append(
                f"| {n} | {name} | {v['mb_per_s_median']:.0f} | {ratio} | {v['errors']} | {v['bytes_ok']} "
                f"| {load} | {cpu} |"
            )
    p = res["push"]
    lines += [
        "",
        "| push | seconds (median) | MB/s |",
        "| --- | --- | --- |",
        f"| embedded | {p['embedded_seconds_median']:.2f} | {p['embedded_mb_per_s']:.0f} |",
        f"| remote (via server) | {p['remote_seconds_median']:.2f} | {p['remote_mb_per_s']:.0f} |",
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--client", help=argparse.SUPPRESS)
    ap.add_argument("--size", default="2GiB")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--clients", default="1,4,16")
    ap.add_argument("--out", type=Path, default=HERE / "out")
    args = ap.parse_args(argv)
    if args.client:
        return client_main(json.loads(args.client))
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="wv-bench-server-"))
    try:
        res = bench(
            parse_size(args.size), args.runs, [int(c) for c in args.clients.split(",")], args.out, work
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = markdown(res)
    print(text)
    (args.out / "last_server.md").write_text(text)
    (args.out / "last_server.json").write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
