"""One HTTP connection pool to a server, and its JSON errors turned back into typed errors.

A ``{code, message}`` answer raises the ``weightvault.core.errors`` class with that code (so
``except ModelNotFoundError`` works the same remotely), or the class its HTTP status maps to.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from weightvault.client import receive
from weightvault.core import errors
from weightvault.core.errors import BackendUnavailableError, WeightvaultError


def _subclasses(cls: type[WeightvaultError]) -> Iterator[type[WeightvaultError]]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


_BY_STATUS: dict[int, type[WeightvaultError]] = {
    400: errors.InvalidInputError,
    401: errors.AuthenticationError,
    403: errors.AccessDeniedError,
    404: errors.NotFoundError,
    409: errors.ConflictError,
    413: errors.PayloadTooLargeError,
    416: errors.RangeNotSatisfiableError,
    422: errors.InvalidInputError,
    503: errors.StorageError,
    507: errors.DiskFullError,
}


def error_from(response: httpx.Response) -> WeightvaultError:
    return error_of(response.status_code, response.content, str(response.request.url))


def error_of(status: int, content: bytes, url: str) -> WeightvaultError:
    """The typed error for an error answer's status and body."""
    try:
        body = json.loads(content)
        code, message = str(body["code"]), str(body["message"])
    except (ValueError, KeyError, TypeError):
        code, message = "", f"HTTP {status} from {url}"
    known: list[type[WeightvaultError]] = [WeightvaultError, *_subclasses(WeightvaultError)]
    by_code: dict[str, type[WeightvaultError]] = {c.code: c for c in known}  # every module is loaded by now
    cls = by_code.get(code) or _BY_STATUS.get(status, WeightvaultError)
    return cls(message)


class Http:
    def __init__(
        self, base_url: str, token: str | None, timeout: float = 300.0, connections: int = 16
    ) -> None:
        headers = {"User-Agent": "weightvault-client"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.headers = headers
        self.timeout = timeout
        self.base = base_url.rstrip("/")
        self.client = httpx.Client(
            base_url=self.base + "/api/v1",
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=10.0),
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
            follow_redirects=False,
        )

    def close(self) -> None:
        self.client.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise BackendUnavailableError(f"server {self.base} unreachable: {exc}") from exc
        if response.status_code >= 400:
            raise error_from(response)
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        return None if response.status_code == 204 else response.json()

    def pages(self, path: str, params: dict[str, Any] | None = None, size: int = 1000) -> Iterator[Any]:
        offset = 0
        while True:
            page = self.json("GET", path, params={**(params or {}), "limit": size, "offset": offset})
            yield from page["items"]
            offset += len(page["items"])
            if not page["items"] or offset >= page["total"]:
                return

    def download(
        self,
        path: str,
        consume: receive.Consume,
        headers: dict[str, str] | None = None,
        on_status: Callable[[int], None] = lambda status: None,
    ) -> receive.Received:
        """GET a file under the API and hand its body to ``consume`` on a second thread, in order
        (``receive``: large socket reads, hashing overlapped with the network)."""
        url = f"{self.base}/api/v1{path}"
        headers = {**self.headers, **(headers or {})}
        return receive.get(url, headers, consume, error_of, self.timeout, on_status)
