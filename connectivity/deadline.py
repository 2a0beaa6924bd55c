"""A point on the check's clock that every wait of a check is measured against."""
from __future__ import annotations

import socket

from plumbing.clock import Clock, SystemClock

_SYSTEM_CLOCK = SystemClock()


class Deadline:
    """A phase waits at most min(its own share, what is left of the whole): none can outlast it.

    Read from the injected clock (a test drives the bound without waiting for it); the waits
    it bounds are the kernel's (poll, recv, connect), which get what is left as their timeout.
    """

    def __init__(self, at: float, clock: Clock = _SYSTEM_CLOCK) -> None:
        self.at, self.clock = at, clock

    @classmethod
    def after(cls, seconds: float, clock: Clock = _SYSTEM_CLOCK) -> Deadline:
        return cls(clock.monotonic() + seconds, clock)

    def left(self) -> float:
        return max(0.0, self.at - self.clock.monotonic())

    @property
    def expired(self) -> bool:
        return self.left() <= 0.0

    def within(self, seconds: float) -> Deadline:
        """A nested deadline: `seconds` from now, or this one, whichever comes first."""
        return Deadline(min(self.at, self.clock.monotonic() + seconds), self.clock)

    def wait(self) -> float:
        """How long one blocking call may wait now; socket.timeout once nothing is left."""
        left = self.left()
        if left <= 0.0:
            raise socket.timeout("deadline reached")
        return left
