"""The manual clock that tests drive limits with: it moves only when told."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from plumbing.clock import Clock, ManualClock, SystemClock


def test_manual_clock_moves_only_by_sleep_advance_and_tick():
    start = datetime(2026, 5, 1, tzinfo=timezone.utc)
    clock: Clock = ManualClock(start)
    assert (clock.monotonic(), clock.monotonic(), clock.now()) == (0.0, 0.0, start)
    clock.sleep(18_000)
    assert clock.monotonic() == 18_000 and clock.now() == start + timedelta(seconds=18_000)
    ticking = ManualClock(tick=5.0)
    assert [ticking.monotonic() for _ in range(3)] == [0.0, 5.0, 10.0], "tick per read"
    ticking.sleep(-3)
    assert ticking.monotonic() == 15.0, "a negative sleep does not move it back"


def test_system_clock_is_a_clock():
    clock: Clock = SystemClock()
    first = clock.monotonic()
    assert clock.monotonic() >= first and clock.now().tzinfo is not None
