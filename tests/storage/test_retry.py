"""The retry policy itself: what is retried, how long it waits, and what it says when it gives up."""

from __future__ import annotations

import random
import threading

import pytest

from weightvault.core.errors import (
    BackendUnavailableError,
    ConfigError,
    MissingObjectError,
    StorageError,
    WeightvaultError,
)
from weightvault.storage.retry import TRANSIENT, Retrier, RetryPolicy, Transient, is_network_error, run_parts


class Flaky(Exception):
    pass


def classify(exc: BaseException, what: str) -> Transient | WeightvaultError | None:
    if isinstance(exc, Flaky):
        return TRANSIENT
    if isinstance(exc, KeyError):
        return MissingObjectError(f"test: {what}: missing")
    return None


def make(attempts: int = 4, deadline: float = 60.0) -> tuple[Retrier, list[float]]:
    slept: list[float] = []
    policy = RetryPolicy(attempts=attempts, base_delay=0.1, max_delay=1.0, deadline=deadline)
    return Retrier("test", policy, classify, sleep=slept.append), slept


def failing(times: int, then: object = "ok") -> tuple[list[int], object]:
    calls = [0]

    def fn() -> object:
        calls[0] += 1
        if calls[0] <= times:
            raise Flaky(f"boom {calls[0]}")
        return then

    return calls, fn


def test_transient_errors_are_retried_with_growing_jittered_backoff() -> None:
    retrier, slept = make(attempts=4)
    calls, fn = failing(3)
    assert retrier("op", fn) == "ok"  # type: ignore[arg-type]
    assert calls[0] == 4 and retrier.retries == 3
    caps = [0.1, 0.2, 0.4]
    assert len(slept) == 3 and all(0 <= s <= cap for s, cap in zip(slept, caps, strict=True))


def test_running_out_names_provider_operation_and_attempts() -> None:
    retrier, slept = make(attempts=3)
    calls, fn = failing(10)
    with pytest.raises(BackendUnavailableError) as info:
        retrier("get some/key", fn)  # type: ignore[arg-type]
    assert calls[0] == 3 and len(slept) == 2
    assert str(info.value).startswith("test: get some/key failed after 3 attempt(s)")
    assert "Flaky: boom 3" in str(info.value)
    assert isinstance(info.value, StorageError) and isinstance(info.value.__cause__, Flaky)


def test_deadline_stops_retrying_before_attempts_run_out() -> None:
    retrier, slept = make(attempts=100, deadline=0.0)
    calls, fn = failing(10)
    with pytest.raises(BackendUnavailableError):
        retrier("op", fn)  # type: ignore[arg-type]
    assert calls[0] == 1 and slept == []


def test_permanent_errors_are_mapped_at_once_and_unknown_ones_pass_through() -> None:
    retrier, slept = make()

    def missing() -> None:
        raise KeyError("k")

    with pytest.raises(MissingObjectError, match="test: stat: missing"):
        retrier("stat", missing)

    def bug() -> None:
        raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        retrier("op", bug)
    assert slept == [] and retrier.retries == 0


def test_full_jitter_stays_under_the_cap() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=3.0)
    rng = random.Random(7)
    delays = [policy.delay(n, rng) for n in range(1, 12) for _ in range(50)]
    assert max(delays) <= 3.0 and min(delays) >= 0
    assert len({round(d, 6) for d in delays}) > 100  # actually random, not a fixed schedule


def test_policy_from_options_and_validation() -> None:
    policy = RetryPolicy.from_options({"retry_attempts": "2", "retry_base_delay": 0.5, "other": 1})
    assert (policy.attempts, policy.base_delay, policy.max_delay) == (2, 0.5, RetryPolicy().max_delay)
    with pytest.raises(ConfigError):
        RetryPolicy(attempts=0)
    with pytest.raises(ConfigError):
        RetryPolicy.from_options({"retry_attempts": "many"})


def test_network_errors_are_found_in_the_cause_chain() -> None:
    try:
        try:
            raise ConnectionResetError(104, "reset by peer")
        except ConnectionResetError as inner:
            raise RuntimeError("wrapped by a library") from inner
    except RuntimeError as outer:
        assert is_network_error(outer)
    assert is_network_error(TimeoutError())
    assert not is_network_error(ValueError("nope"))


def test_run_parts_keeps_order_and_stops_after_the_first_failure() -> None:
    assert run_parts(10, lambda i: i * i, 4) == [i * i for i in range(10)]
    started: list[int] = []
    lock = threading.Lock()

    def send(i: int) -> int:
        with lock:
            started.append(i)
        if i == 1:
            raise StorageError("part 1 failed")
        return i

    with pytest.raises(StorageError, match="part 1 failed"):
        run_parts(200, send, 2)
    assert len(started) < 20  # queued parts were cancelled, not all run
