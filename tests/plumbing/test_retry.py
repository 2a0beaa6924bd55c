"""The retry policy: exponential backoff with jitter, bounded attempts, selective retry."""
from __future__ import annotations

import pytest

from plumbing.retry import RetryPolicy


def test_backoff_doubles_up_to_the_cap_with_bounded_jitter():
    policy = RetryPolicy(base_delay=0.5, max_delay=3.0, jitter=0.2)
    assert [policy.delay(n, rng=lambda: 0.0) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert policy.delay(1, rng=lambda: 1.0) == pytest.approx(0.6)


def test_gives_up_after_the_declared_attempts_and_sleeps_between():
    calls, sleeps = [], []

    def flaky():
        calls.append(1)
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        RetryPolicy(attempts=3, base_delay=1.0, jitter=0.0).call(flaky, sleep=sleeps.append)
    assert len(calls) == 3 and sleeps == [1.0, 2.0]


def test_non_retryable_errors_fail_at_once():
    calls = []

    def denied():
        calls.append(1)
        raise PermissionError("403")

    policy = RetryPolicy(attempts=5, retry_on=lambda exc: not isinstance(exc, PermissionError))
    with pytest.raises(PermissionError):
        policy.call(denied, sleep=lambda s: None)
    assert len(calls) == 1
