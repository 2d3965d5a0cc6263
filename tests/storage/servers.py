"""Start and stop the real protocol servers the storage tests and benchmarks run against.

Each server is a child process bound to a free 127.0.0.1 port: moto's S3 server, Azurite's blob
service and gcp-storage-emulator (through ``gcs_emulator.py``). Processes, not threads, so a test
can kill one mid-operation and so their CPU work does not share the test's GIL. No pytest here:
``bench/bench_backends.py`` uses the same helpers.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"

#: Azurite's well-known development account (public, documented; grants nothing outside Azurite).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


class ServerError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def port_open(port: int) -> bool:
    try:
        socket.create_connection((HOST, port), timeout=0.2).close()
    except OSError:
        return False
    return True


def _die_with_parent() -> None:
    """Linux: the kernel kills the server if the test process dies without cleaning up."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class ServerProcess:
    """One emulator child process on a fixed port; ``stop`` then ``start`` reuses the port."""

    def __init__(self, name: str, argv: Sequence[str], port: int, cwd: Path | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.port = port
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - lives as long as the server
            prefix=f"wv-{name}-", suffix=".log", delete=False
        )

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self, timeout: float = 60.0) -> ServerProcess:
        if self.proc is not None and self.proc.poll() is None:
            return self
        self.proc = subprocess.Popen(
            self.argv,
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C in pytest must not hit the server first
            preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + timeout
        while not port_open(self.port):
            if self.proc.poll() is not None:
                raise ServerError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise ServerError(
                    f"{self.name} did not listen on {self.port} in {timeout}s:\n{self.log_tail()}"
                )
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        """Kill the server (SIGKILL: tests use this as 'the server died', not a graceful shutdown)."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 5
        while port_open(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def close(self) -> None:
        self.stop()
        self._log.close()
        Path(self._log.name).unlink(missing_ok=True)
        if self.cwd is not None and self.cwd.name.startswith("wv-"):
            shutil.rmtree(self.cwd, ignore_errors=True)

    def log_tail(self, limit: int = 4000) -> str:
        self._log.flush()
        return Path(self._log.name).read_text(errors="replace")[-limit:]


def moto_server(port: int | None = None) -> ServerProcess:
    port = port or free_port()
    return ServerProcess("moto", [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)], port)


def azurite_binary() -> str:
    """Azurite's blob-only entry point: $AZURITE_BLOB, the install script's folder, then PATH."""
    tools = Path(os.environ.get("TEST_TOOLS_DIR") or REPO / ".test-tools")
    candidates = [
        os.environ.get("AZURITE_BLOB", ""),
        str(tools / "node_modules" / ".bin" / "azurite-blob"),
        shutil.which("azurite-blob") or "",
    ]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise ServerError("azurite-blob not found: run scripts/install-test-tools.sh")


def azurite_server(port: int | None = None) -> ServerProcess:
    port = port or free_port()
    workdir = Path(tempfile.mkdtemp(prefix="wv-azurite-"))
    argv = [
        azurite_binary(),
        "--blobHost", HOST,
        "--blobPort", str(port),
        "--inMemoryPersistence",
        "--disableTelemetry",
        "--silent",
        # The Python SDK may speak a newer API version than this Azurite release knows.
        "--skipApiVersionCheck",
    ]  # fmt: skip
    return ServerProcess("azurite", argv, port, cwd=workdir)


def azurite_connection_string(endpoint: str) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
        f"BlobEndpoint={endpoint}/{AZURITE_ACCOUNT};"
    )


def gcs_server(port: int | None = None) -> ServerProcess:
    port = port or free_port()
    script = Path(__file__).with_name("gcs_emulator.py")
    return ServerProcess(
        "gcs-emulator", [sys.executable, str(script), "--host", HOST, "--port", str(port)], port
    )
