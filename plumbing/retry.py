"""A declared retry policy: attempts, exponential backoff with jitter, which errors retry."""
from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently an operation is retried."""

    attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 8.0
    jitter: float = 0.25  # fraction of the delay added at random
    retry_on: Callable[[BaseException], bool] = field(default=lambda exc: True)

    def delay(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        base = min(self.max_delay, self.base_delay * 2.0 ** (attempt - 1))
        return base * (1.0 + self.jitter * rng())

    def call(
        self,
        operation: Callable[[], T],
        sleep: Callable[[float], None] = time.sleep,
        on_retry: Optional[Callable[[int, BaseException, float], None]] = None,
    ) -> T:
        """Run `operation` until it succeeds, the error is not retryable, or attempts run out."""
        errors: list[BaseException] = []
        for attempt in range(1, self.attempts + 1):
            try:
                return operation()
            except Exception as exc:  # noqa: BLE001 - the policy decides what is retryable
                errors.append(exc)
                if attempt == self.attempts or not self.retry_on(exc):
                    raise
                wait = self.delay(attempt)
                if on_retry is not None:
                    on_retry(attempt, exc, wait)
                sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover


NO_RETRY = RetryPolicy(attempts=1)
