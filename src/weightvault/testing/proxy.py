"""A loopback TCP proxy that breaks one download or upload mid-stream, to test that clients resume.

It forwards bytes both ways unchanged and notes the request line and ``Range`` header of each
plain-HTTP request it sees. The first ``GET`` whose path ends with ``cut_path`` has its
connection closed once ``cut_after`` bytes of the answer went through: a real interrupted
transfer, as a dropped network link produces it. With ``cut_method="PUT"``, the first PUT whose
path contains ``cut_path`` is cut instead once ``cut_after`` bytes of the request went through.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from dataclasses import dataclass, field
from types import TracebackType

from weightvault.testing.server import HOST

_REQUEST = re.compile(rb"^(GET|HEAD|POST|PUT|DELETE) (\S+) HTTP/1\.[01]\r\n", re.M)
_RANGE = re.compile(rb"^range: *(\S+)\r\n", re.M | re.I)


@dataclass
class Seen:
    method: str
    path: str
    range: str | None


@dataclass
class CuttingProxy:
    upstream_port: int
    cut_path: str
    cut_after: int
    cut_method: str = "GET"
    seen: list[Seen] = field(default_factory=list)
    cuts: int = 0

    def __post_init__(self) -> None:
        self._listener = socket.create_server((HOST, 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"http://{HOST}:{self.port}"
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self._closed = False

    def __enter__(self) -> CuttingProxy:
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._closed = True
        self._listener.close()
        for s in list(self._sockets):
            with contextlib.suppress(OSError):
                s.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection((HOST, self.upstream_port))
            self._sockets += [client, upstream]
            armed = threading.Event()
            for target, args in (
                (self._requests, (client, upstream, armed)),
                (self._answers, (upstream, client, armed)),
            ):
                t = threading.Thread(target=target, args=args, daemon=True)
                t.start()
                self._threads.append(t)

    def _requests(self, src: socket.socket, dst: socket.socket, armed: threading.Event) -> None:
        budget: int | None = None  # bytes of the request still let through, once a PUT is cut
        with contextlib.suppress(OSError):
            while data := src.recv(1 << 16):
                for m in _REQUEST.finditer(data):
                    head = data[m.start() : data.find(b"\r\n\r\n", m.start()) + 2]
                    r = _RANGE.search(head)
                    seen = Seen(m.group(1).decode(), m.group(2).decode(), r.group(1).decode() if r else None)
                    with self._lock:
                        self.seen.append(seen)
                        if self.cuts or seen.method != self.cut_method:
                            continue
                        if seen.method == "GET" and seen.path.endswith(self.cut_path):
                            self.cuts = 1
                            armed.set()
                        elif seen.method != "GET" and self.cut_path in seen.path:
                            self.cuts = 1
                            budget = m.start() + self.cut_after
                if budget is not None:
                    if len(data) >= budget:
                        dst.sendall(data[:budget])
                        for s in (src, dst):  # the client sees a broken connection, the server a short body
                            with contextlib.suppress(OSError):
                                s.shutdown(socket.SHUT_RDWR)
                        return
                    budget -= len(data)
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def _answers(self, src: socket.socket, dst: socket.socket, armed: threading.Event) -> None:
        sent = 0
        with contextlib.suppress(OSError):
            while data := src.recv(1 << 16):
                if armed.is_set():
                    room = self.cut_after - sent
                    if len(data) >= room:
                        dst.sendall(data[: max(room, 0)])
                        break
                    sent += len(data)
                dst.sendall(data)
        for s in (src, dst):  # shutdown wakes the other direction's recv and sends the FIN now
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()
