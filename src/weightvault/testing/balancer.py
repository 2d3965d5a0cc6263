"""A loopback HTTP load balancer that sends each request to the next server in turn.

Round-robin per request, not per connection (as a layer-7 balancer does with keep-alive
clients), so a client's consecutive requests land on different server processes: what tests
that server processes are stateless. Bodies stream both ways. It notes which server took each
request, and can break the first ``max_cuts`` upload requests (a ``PUT`` whose path contains
``cut_path``) after ``cut_after`` bytes of their body: the client sees a broken connection, the server a short
body.
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

from weightvault.testing.server import HOST

_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}
_PIECE = 1 << 16


@dataclass(frozen=True)
class Routed:
    method: str
    path: str
    upstream: int  # index into the balancer's ports


class RoundRobinBalancer:
    def __init__(
        self, ports: list[int], cut_path: str | None = None, cut_after: int = 0, max_cuts: int = 1
    ) -> None:
        self.ports = ports
        self.cut_path = cut_path
        self.cut_after = cut_after
        #: how many upload requests are broken (the first ones)
        self.max_cuts = max_cuts
        self.cuts = 0
        self.routed: list[Routed] = []
        self._next = itertools.cycle(range(len(ports)))
        self._lock = threading.Lock()
        balancer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                return

            def _forward(self) -> None:
                balancer.forward(self)

            do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _forward

        self._server = ThreadingHTTPServer((HOST, 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://{HOST}:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> RoundRobinBalancer:
        self._thread.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()

    def forward(self, h: BaseHTTPRequestHandler) -> None:
        with self._lock:
            which = next(self._next)
            self.routed.append(Routed(h.command, h.path, which))
            cut = (
                self.cut_path is not None
                and self.cuts < self.max_cuts
                and h.command == "PUT"
                and self.cut_path in h.path
            )
            if cut:
                self.cuts += 1
        length = int(h.headers.get("Content-Length") or 0)
        upstream = http.client.HTTPConnection(HOST, self.ports[which], timeout=300)
        try:
            upstream.putrequest(h.command, h.path, skip_host=True, skip_accept_encoding=True)
            for key, value in h.headers.items():
                if key.lower() not in _HOP:
                    upstream.putheader(key, value)
            upstream.endheaders()
            left = length
            budget = self.cut_after if cut else length
            while left:
                piece = h.rfile.read(min(_PIECE, left, budget) if cut else min(_PIECE, left))
                if not piece:
                    break
                upstream.send(piece)
                left -= len(piece)
                budget -= len(piece)
                if cut and budget <= 0:
                    for sock in (upstream.sock, h.connection):
                        with contextlib.suppress(OSError):
                            sock.shutdown(socket.SHUT_RDWR)
                    h.close_connection = True
                    return
            answer = upstream.getresponse()
            h.send_response_only(answer.status, answer.reason)
            sized = answer.getheader("Content-Length") is not None
            for key, value in answer.getheaders():
                if key.lower() not in _HOP:
                    h.send_header(key, value)
            if not sized:  # a streamed answer without a length ends with the connection
                h.send_header("Connection", "close")
                h.close_connection = True
            h.end_headers()
            if h.command != "HEAD":
                while data := answer.read(_PIECE):
                    h.wfile.write(data)
            h.wfile.flush()
        except OSError:
            h.close_connection = True
        finally:
            upstream.close()
