"""One retry policy for every cloud backend: exponential backoff with full jitter.

The client libraries each retry differently (botocore, azure-core and google-api-core all have
their own knobs and defaults), so the backends switch those off and call through ``Retrier``.
That gives one place to bound the budget (tests shrink it to milliseconds), one definition of
"transient", and one error when the budget runs out: ``BackendUnavailableError`` naming the
provider and the operation, so a user reading it knows which cloud to look at.
"""

from __future__ import annotations

import http.client
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from weightvault.core.errors import BackendUnavailableError, ConfigError, WeightvaultError

T = TypeVar("T")
log = logging.getLogger(__name__)

#: HTTP statuses worth retrying: timeouts, throttling and server-side failures.
TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class Transient(Exception):
    """Marker a classifier returns for 'try again'; never raised to callers."""


TRANSIENT = Transient()

#: A classifier maps a library exception (and the operation, for the message) to TRANSIENT, to
#: the weightvault error to raise at once, or to None (not ours to interpret: re-raise as is).
Classifier = Callable[[BaseException, str], "Transient | WeightvaultError | None"]


def is_network_error(exc: BaseException) -> bool:
    """A dropped, refused or timed-out connection anywhere in the exception's cause chain."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ConnectionError | TimeoutError | http.client.HTTPException):
            return True
        current = current.__cause__ or current.__context__
    return False


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long a backend keeps trying before it reports the provider unavailable."""

    attempts: int = 6  # total tries, the first included
    base_delay: float = 0.25  # seconds; try n waits U(0, min(max_delay, base_delay * 2**(n-1)))
    max_delay: float = 8.0
    deadline: float = 120.0  # never start a retry this long after the first try

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.base_delay < 0 or self.max_delay < 0 or self.deadline < 0:
            raise ConfigError(f"invalid retry policy {self}")

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> RetryPolicy:
        """Read ``retry_attempts``, ``retry_base_delay``, ``retry_max_delay``, ``retry_deadline``."""
        given = {
            name: options[f"retry_{name}"]
            for name in ("attempts", "base_delay", "max_delay", "deadline")
            if options.get(f"retry_{name}") is not None
        }
        defaults = cls()
        try:
            return cls(
                attempts=int(given.get("attempts", defaults.attempts)),
                base_delay=float(given.get("base_delay", defaults.base_delay)),
                max_delay=float(given.get("max_delay", defaults.max_delay)),
                deadline=float(given.get("deadline", defaults.deadline)),
            )
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"invalid retry option: {exc}") from exc

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Full jitter (AWS architecture blog): spreads out clients that failed together."""
        cap = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return (rng or random).uniform(0, cap)


@dataclass
class Retrier:
    """Runs calls for one backend under its policy and keeps counts for reports and tests."""

    provider: str
    policy: RetryPolicy
    classify: Classifier
    sleep: Callable[[float], None] = time.sleep
    retries: int = 0  # transient failures retried, over the backend's lifetime
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __call__(self, what: str, fn: Callable[[], T]) -> T:
        start = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                return fn()
            except WeightvaultError:
                raise
            except Exception as exc:
                verdict = self.classify(exc, what)
                if isinstance(verdict, WeightvaultError):
                    raise verdict from exc
                if verdict is None:
                    raise
                elapsed = time.monotonic() - start
                delay = self.policy.delay(attempt)
                if attempt >= self.policy.attempts or elapsed + delay > self.policy.deadline:
                    raise BackendUnavailableError(
                        f"{self.provider}: {what} failed after {attempt} attempt(s) in {elapsed:.1f}s: "
                        f"{describe(exc)}"
                    ) from exc
                with self._lock:
                    self.retries += 1
                log.debug("%s: %s attempt %d failed (%s); retrying in %.2fs",
                          self.provider, what, attempt, describe(exc), delay)  # fmt: skip
                self.sleep(delay)


def describe(exc: BaseException) -> str:
    """One line for an error message: libraries put whole XML bodies into str(exc)."""
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(exc).__name__}: {first[:300]}" if first else type(exc).__name__


def run_parts(count: int, send: Callable[[int], T], max_concurrency: int) -> list[T]:
    """Run ``send(0..count-1)`` on up to ``max_concurrency`` threads; results in index order.

    Each part carries its own retries (``send`` calls a ``Retrier``), so one flaky part costs
    one part, not the whole upload. The first part to fail for good stops the rest: queued
    parts are cancelled and running ones are told to stop, so a dead server costs one retry
    budget rather than one per part. Memory stays bounded because each part reads its bytes
    only when it runs.
    """
    if count <= 1 or max_concurrency <= 1:
        return [send(i) for i in range(count)]
    failed = threading.Event()

    def guarded(index: int) -> T:
        if failed.is_set():
            raise _Cancelled
        try:
            return send(index)
        except BaseException:
            failed.set()
            raise

    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=min(count, max_concurrency), thread_name_prefix="wv-part")
    try:
        futures = [pool.submit(guarded, i) for i in range(count)]
        results: list[T] = []
        first_error: BaseException | None = None
        for future in futures:
            try:
                results.append(future.result())
            except _Cancelled:
                continue
            except BaseException as exc:
                first_error = first_error or exc
                failed.set()
        if first_error is not None:
            raise first_error
        return results
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class _Cancelled(Exception):
    """A part skipped because another part already failed."""
