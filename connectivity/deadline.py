"""A point on the monotonic clock that every wait of a check is measured against."""
from __future__ import annotations

import socket
import time


class Deadline:
    """A phase waits at most min(its own share, what is left of the whole): none can outlast it.

    Real monotonic time, not the injected clock: the waits it bounds are the kernel's (poll,
    recv, connect), which a test clock cannot advance.
    """

    def __init__(self, at: float) -> None:
        self.at = at

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds)

    def left(self) -> float:
        return max(0.0, self.at - time.monotonic())

    @property
    def expired(self) -> bool:
        return self.left() <= 0.0

    def within(self, seconds: float) -> Deadline:
        """A nested deadline: `seconds` from now, or this one, whichever comes first."""
        return Deadline(min(self.at, time.monotonic() + seconds))

    def wait(self) -> float:
        """How long one blocking call may wait now; socket.timeout once nothing is left."""
        left = self.left()
        if left <= 0.0:
            raise socket.timeout("deadline reached")
        return left
