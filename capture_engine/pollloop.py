"""The capture thread's loop, shared by both backends: wait, service ready sources, nap."""
from __future__ import annotations

import os
import select
import time
from typing import Callable, Mapping

# The kernel hands over a partly filled ring block after this long (both backends use it).
BLOCK_TIMEOUT_MS = 200
# A batch smaller than this is followed by a nap of NAP_MS; the 32 MiB ring holds far more
# than NAP_MS of traffic (200k pps of full-size frames fill 16 MiB in 50 ms).
NAP_BELOW_PACKETS, NAP_MS = 20_000, 50
STATS_EVERY = 1.0

Service = Callable[[int], int]  # poll events -> packets handled


def serve(sources: Mapping[int, Service], wake_fd: int, running: Callable[[], bool],
          refresh_stats: Callable[[], None], events: int = select.POLLIN) -> None:
    """Until `running()` is false: poll the sources and the wake pipe, service what is
    ready, nap after small batches, refresh the kernel's counters every second."""
    poller = select.poll()
    poller.register(wake_fd, select.POLLIN)
    for fd in sources:
        poller.register(fd, events)
    next_stats = time.monotonic() + STATS_EVERY
    while running():
        handled = 0
        for fd, ready in poller.poll(BLOCK_TIMEOUT_MS):
            if fd == wake_fd:
                os.read(wake_fd, 64)
            elif fd in sources:
                handled += sources[fd](ready)
        if 0 < handled < NAP_BELOW_PACKETS:
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
