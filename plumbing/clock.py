"""An injectable clock so limits and timeouts can be driven by tests."""
from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Protocol


class Clock(Protocol):
    """What a limit or a timeout reads time from: tests pass one they can drive."""

    def now(self) -> datetime: ...

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """Wall time in UTC, a monotonic counter and sleep, from the operating system."""

    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class ManualClock:
    """A clock that moves only when told, so a test drives a limit without waiting for it.

    sleep() and advance() move it at once; every monotonic() read also moves it by `tick`
    (to drive a loop that reads the clock but never sleeps on it). Thread-safe: a test may
    advance it while the code under test reads it.
    """

    def __init__(self, start: datetime = datetime(2026, 1, 1, tzinfo=timezone.utc),
                 tick: float = 0.0) -> None:
        self._start, self._elapsed, self.tick = start, 0.0, tick
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._start + timedelta(seconds=self._elapsed)

    def monotonic(self) -> float:
        with self._lock:
            value, self._elapsed = self._elapsed, self._elapsed + self.tick
            return value

    def sleep(self, seconds: float) -> None:
        self.advance(max(0.0, seconds))

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._elapsed += seconds


def utc_timestamp(moment: datetime) -> str:
    """ISO 8601 with a Z suffix, as the agent's status files use."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
