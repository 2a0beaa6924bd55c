"""The worker's end of the thaw watchdog: start it, tell it every claim and outcome, hear its
forced thaws, and notice its end or death (the worker then thaws at once)."""
from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import Callable, Optional

from snapshot.errors import FreezeError
from snapshot.signalsafe import start_quiet_thread

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
READY_TIMEOUT = 15.0


class WatchdogLink:
    """Pipes to and from `python -B -m snapshot.watchdog`, held as raw fds: no Python object
    closes them behind our back (at garbage collection or interpreter exit), so the watchdog
    sees EOF only when this process is really gone."""

    def __init__(self, mounts: Sequence[str], timeout: float, report: Optional[str]) -> None:
        self._setup = {"mounts": list(mounts), "timeout": timeout, "report": report}
        self.fired = threading.Event()  # the watchdog thawed at its deadline
        self.broken = ""  # why the freeze stopped holding otherwise (watchdog signal/error/death)
        self.ended = False  # it said `end`: it left on purpose, nothing of ours unknown to it
        self.ready_at = 0.0  # monotonic time of `ready`: its clock started just before
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self._to = self._from = -1
        self._lock = threading.Lock()
        self._finished = False
        self._reader: Optional[threading.Thread] = None

    def start(self, on_lost: Callable[[WatchdogLink], None],
              on_forced: Callable[[], None]) -> list[str]:
        """Spawn the watchdog and wait for `ready`; returns its notes. In the reader thread:
        `on_forced()` when it says it made a forced thaw (from then on it thaws every claim
        told before, and any later `frozen I`), `on_lost(self)` if it ends before we said
        `done`."""
        to_r, self._to = os.pipe()
        self._from, from_w = os.pipe()
        env = dict(os.environ)
        env["PYTHONPATH"] = _ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH")
                                     else "")
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-B", "-m", "snapshot.watchdog"], stdin=to_r, stdout=from_w,
                stderr=subprocess.DEVNULL, cwd="/", env=env,
                start_new_session=True)  # survives a kill of the worker's process group
        finally:
            os.close(to_r)
            os.close(from_w)
        notes, rest = self._handshake() if self.tell(json.dumps(self._setup)) else (None, b"")
        if notes is None:
            self._abort()
            raise FreezeError("the thaw watchdog did not start; nothing was frozen")
        self.ready_at = time.monotonic()
        self._reader = start_quiet_thread(self._listen, rest, on_lost, on_forced)
        return notes

    def tell(self, line: str) -> bool:
        """One line, one write(2) (atomic on a pipe); False if the watchdog is gone."""
        with self._lock:
            if self._to < 0:
                return False
            try:
                os.write(self._to, line.encode() + b"\n")
                return True
            except OSError:
                return False

    def finish(self) -> None:
        """`done`: everything is thawed and no FIFREEZE is in flight; wait for the watchdog."""
        self._say_done()
        if self.proc is not None:
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._reader is not None:
            self._reader.join(5)
            if not self._reader.is_alive():
                os.close(self._from)

    def linger(self) -> None:
        """A FIFREEZE is still in flight: the watchdog thaws now, then thaws each late one as it
        is told `frozen I`, or at our death; the thread whose FIFREEZE ends last says `done`."""
        self.tell("linger")

    def done_from_thread(self) -> None:
        """`done` from a freeze thread: do not wait for the watchdog (it reaps itself later)."""
        self._say_done()

    def _say_done(self) -> None:
        self._finished = True
        self.tell("done")
        with self._lock:
            if self._to >= 0:
                os.close(self._to)
                self._to = -1

    def _handshake(self) -> tuple[Optional[list[str]], bytes]:
        notes: list[str] = []
        buffer = b""
        deadline = time.monotonic() + READY_TIMEOUT  # real time: it waits for a real process
        while True:
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                if line == b"ready":
                    return notes, buffer
                if not line.startswith(b"note "):
                    return None, b""
                notes.append(line[5:].decode("utf-8", "replace"))
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from], [], [], left)[0]:
                return None, b""
            data = os.read(self._from, 4096)
            if not data:
                return None, b""
            buffer += data

    def _listen(self, buffer: bytes, on_lost: Callable[[WatchdogLink], None],
                on_forced: Callable[[], None]) -> None:
        while True:
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                if self._hear(line.decode("utf-8", "replace")):
                    on_forced()
            try:
                data = os.read(self._from, 4096)
            except OSError:
                data = b""
            if not data:
                break
            buffer += data
        if not self._finished:
            if not self.ended:
                self.broken = self.broken or "the thaw watchdog died"
            on_lost(self)

    def _hear(self, line: str) -> bool:
        """Note what the watchdog says; True for a forced thaw."""
        if line == "end":
            self.ended = True
            return False
        if line.startswith(("done", "died", "late")) or " thawed=" not in line:
            return False
        if line.startswith("timeout"):
            self.fired.set()
        elif not line.startswith("linger") and not self._finished:
            self.broken = f"the thaw watchdog thawed early ({line.split(' thawed=')[0]})"
        return True

    def _abort(self) -> None:
        with self._lock:
            os.close(self._to)
            self._to = -1
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
        os.close(self._from)
