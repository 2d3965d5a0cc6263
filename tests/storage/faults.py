"""A loopback TCP proxy that injects the failures retry logic exists for.

It sits between a backend and a real emulator and, on command: answers the next N new
connections with ``503 Service Unavailable`` (throttling / server trouble), resets the next N
connections (a dropped link), or "dies" after forwarding a number of request bytes (the server
went away mid-upload: open connections are reset, new ones refused) until ``heal()``.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections import deque

from servers import HOST

_SERVICE_UNAVAILABLE = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/xml\r\nContent-Length: 0\r\n"
    b"Retry-After: 0\r\nConnection: close\r\n\r\n"
)


def _reset(sock: socket.socket) -> None:
    """Close with RST, not FIN: what a crashed peer or a dropped link looks like."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    # close() alone would wait for a recv() blocked in another thread; shutdown wakes it.
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


class FaultProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((HOST, 0))
        self._listener.listen(128)
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        self._planned: deque[str] = deque()
        self._cut_after: int | None = None
        self._forwarded = 0
        self._dead = False
        self._stay_dead = True
        self._closed = False
        self._open: set[socket.socket] = set()
        self.connections = 0
        self.injected = 0
        threading.Thread(target=self._accept_loop, daemon=True, name="fault-proxy").start()

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    # -- controls -----------------------------------------------------------------------------

    def fail_next(self, count: int, mode: str = "503") -> None:
        """The next ``count`` new connections get ``mode``: "503" or "reset"."""
        assert mode in ("503", "reset")
        with self._lock:
            self._planned.extend([mode] * count)

    def cut_after(self, request_bytes: int, stay_dead: bool = True) -> None:
        """Reset every connection once this many more request bytes went upstream.

        With ``stay_dead`` new connections are refused too (the server died), otherwise they
        work again (a dropped link).
        """
        with self._lock:
            self._forwarded = 0
            self._cut_after = request_bytes
            self._stay_dead = stay_dead

    def kill(self) -> None:
        with self._lock:
            self._dead = self._stay_dead
            self._cut_after = None
            victims = list(self._open)
            self._open.clear()
        for sock in victims:
            _reset(sock)

    def heal(self) -> None:
        with self._lock:
            self._dead = False
            self._cut_after = None
            self._planned.clear()

    def close(self) -> None:
        self._closed = True
        self.kill()
        with contextlib.suppress(OSError):
            self._listener.close()

    # -- plumbing -----------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with self._lock:
            self.connections += 1
            mode = "reset" if self._dead else (self._planned.popleft() if self._planned else "")
            if mode:
                self.injected += 1
        if mode == "reset":
            _reset(client)
            return
        if mode == "503":
            client.settimeout(5)
            with contextlib.suppress(OSError):
                head = b""
                while b"\r\n\r\n" not in head and len(head) < 65536:
                    chunk = client.recv(65536)
                    if not chunk:
                        break
                    head += chunk
                client.sendall(_SERVICE_UNAVAILABLE)
            _reset(client)  # the request body may still be on its way
            return
        try:
            upstream = socket.create_connection((HOST, self.upstream_port), timeout=5)
        except OSError:
            _reset(client)
            return
        upstream.settimeout(None)
        with self._lock:
            self._open.update((client, upstream))
        back = threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True)
        back.start()
        self._pump(client, upstream, True)
        back.join()
        for sock in (client, upstream):
            with contextlib.suppress(OSError):
                sock.close()

    def _pump(self, src: socket.socket, dst: socket.socket, counts: bool) -> None:
        try:
            while True:
                data = src.recv(262144)
                if not data:
                    break
                dst.sendall(data)
                if counts:
                    with self._lock:
                        self._forwarded += len(data)
                        cut = self._cut_after is not None and self._forwarded >= self._cut_after
                    if cut:
                        self.kill()
                        return
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)
            with self._lock:
                self._open.discard(src)
                self._open.discard(dst)
