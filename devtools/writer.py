"""A writer process on a filesystem whose heartbeats (one per completed write) time its stalls."""
from __future__ import annotations

import subprocess
import sys
import threading
import time
from typing import List

WRITER = r"""
import os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o600)
block = os.urandom(4096)
i = 0
while True:
    os.pwrite(fd, block, (i % 1024) * 4096)
    if i % 32 == 0:
        os.fsync(fd)
    os.write(1, b".")
    i += 1
    time.sleep(0.002)
"""


class Writer:
    """Writes 4 KiB every 2 ms (fsync every 32 writes) until stopped; one beat per write."""

    def __init__(self, path: str) -> None:
        self.beats: List[float] = []
        self.proc = subprocess.Popen([sys.executable, "-c", WRITER, path],
                                     stdout=subprocess.PIPE, start_new_session=True)
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        for _ in iter(lambda: self.proc.stdout.read1(4096), b""):
            self.beats.append(time.monotonic())

    @property
    def count(self) -> int:
        return len(self.beats)

    def longest_stall(self, since: float = 0.0) -> float:
        times = [t for t in self.beats if t >= since]
        return max((b - a for a, b in zip(times, times[1:])), default=0.0)

    def stall(self, start: float, end: float) -> float:
        """The longest gap between two writes around [start, end] (1 s of slack after)."""
        times = [t for t in self.beats if start <= t <= end + 1.0]
        return max((b - a for a, b in zip(times, times[1:])), default=0.0)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        self._thread.join(5)
