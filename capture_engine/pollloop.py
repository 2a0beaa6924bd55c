"""The capture thread's loop, shared by both backends: wait, service ready sources, nap."""
from __future__ import annotations

import os
import select
import threading
import time
from typing import Callable, Mapping

# The kernel hands over a partly filled ring block after this long (both backends use it).
BLOCK_TIMEOUT_MS = 200
# A batch smaller than this is followed by a nap of NAP_MS; the 32 MiB ring holds far more
# than NAP_MS of traffic (200k pps of full-size frames fill 16 MiB in 50 ms).
NAP_BELOW_PACKETS, NAP_MS = 20_000, 50
STATS_EVERY = 1.0
# A source whose interface went away is closed only after its last partly filled ring
# block has been retired by the kernel and read.
RETIRE_AFTER = 2.5 * BLOCK_TIMEOUT_MS / 1000

Service = Callable[[int], int]  # poll events -> packets handled


class PendingChanges:
    """Source changes asked for by other threads (an interface gone, one back), applied by
    the loop thread between two polls: only that thread ever closes a source it polls."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[Callable[[], None]] = []

    def push(self, change: Callable[[], None]) -> None:
        with self._lock:
            self._pending.append(change)

    def apply(self) -> bool:
        """Run the queued changes in order; whether there were any."""
        with self._lock:
            pending, self._pending = self._pending, []
        for change in pending:
            change()
        return bool(pending)


class Retiring:
    """Sources (by interface name) to close once their last ring blocks can have arrived."""

    def __init__(self) -> None:
        self._due: dict[str, float] = {}

    def add(self, name: str) -> None:
        self._due.setdefault(name, time.monotonic() + RETIRE_AFTER)

    def cancel(self, name: str) -> None:
        self._due.pop(name, None)

    def due(self) -> list[str]:
        now = time.monotonic()
        names = [name for name, when in self._due.items() if when <= now]
        for name in names:
            del self._due[name]
        return names


def _poller(sources: Mapping[int, Service], wake_fd: int, events: int) -> select.poll:
    poller = select.poll()
    poller.register(wake_fd, select.POLLIN)
    for fd in sources:
        poller.register(fd, events)
    return poller


def serve(sources: Callable[[], Mapping[int, Service]], wake_fd: int,
          running: Callable[[], bool], refresh_stats: Callable[[], None],
          events: int = select.POLLIN, changed: Callable[[], bool] = lambda: False,
          naps: bool = True) -> None:
    """Until `running()` is false: poll the sources and the wake pipe, service what is
    ready, nap after small batches, refresh the kernel's counters every second.
    `changed()` (called each round) says the set of sources changed: `sources()` is re-read.
    `naps=False` (--immediate-mode): never nap, each packet is written as soon as it is read.
    """
    current = dict(sources())
    poller = _poller(current, wake_fd, events)
    next_stats = time.monotonic() + STATS_EVERY
    while running():
        if changed():
            current = dict(sources())
            poller = _poller(current, wake_fd, events)
        handled = 0
        for fd, ready in poller.poll(BLOCK_TIMEOUT_MS):
            if fd == wake_fd:
                os.read(wake_fd, 64)
            elif fd in current:
                handled += current[fd](ready)
        if naps and 0 < handled < NAP_BELOW_PACKETS:
            nap(wake_fd)
        if time.monotonic() >= next_stats:
            refresh_stats()
            next_stats = time.monotonic() + STATS_EVERY
    refresh_stats()


def nap(wake_fd: int) -> None:
    """After a small batch, let the ring fill a little before the next wake-up: waking per
    ring block costs more in Python than the packets themselves at low rates. A stop request
    (a byte on `wake_fd`) ends the nap at once.
    """
    poller = select.poll()
    poller.register(wake_fd, select.POLLIN)
    poller.poll(NAP_MS)
