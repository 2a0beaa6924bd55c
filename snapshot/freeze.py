"""Freeze chosen mounts under a thaw watchdog process; thaw in reverse order in `finally`."""
from __future__ import annotations

import ctypes
import fcntl
import json
import os
import select
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import List, Optional

from snapshot.errors import Code, FreezeError
from snapshot.log import BufferedLog
from snapshot.watchdog import FIFREEZE, FITHAW

_LIBC = ctypes.CDLL(None, use_errno=True)
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
READY_TIMEOUT = 15.0


class Freezer:
    """Context manager: spawns the watchdog, freezes `mounts` in order, thaws them in reverse."""

    def __init__(self, mounts: Sequence[str], timeout: float, log: BufferedLog,
                 report_path: str | None = None) -> None:
        self.mounts = list(mounts)
        self.timeout = timeout
        self.log = log
        self.report_path = report_path
        self.frozen: list[int] = []
        self.first_freeze = 0.0
        self.last_thaw = 0.0
        self.watchdog_fired = False
        self._fds: list[int] = []
        self._dog: subprocess.Popen | None = None

    @property
    def window(self) -> float:
        """Seconds from the first FIFREEZE to the last FITHAW."""
        return max(0.0, self.last_thaw - self.first_freeze)

    def __enter__(self) -> Freezer:  # noqa: PYI034
        try:
            self._fds = [os.open(m, os.O_RDONLY | os.O_DIRECTORY) for m in self.mounts]
        except OSError as exc:
            self._close()
            raise FreezeError(f"cannot open mount {exc.filename}: {exc.strerror}",
                              Code.CANNOT_OPEN_MOUNT) from None
        # Flush dirty data before the clock starts (a shorter FIFREEZE), but within the freeze
        # timeout: a sync that hangs would hang the FIFREEZE too, which the watchdog bounds.
        if not _presync(self._fds, self.timeout):
            self.log.warning(f"syncfs did not finish within {self.timeout:g}s; freezing anyway")
        self._start_watchdog()
        # `/` (if chosen) is last and frozen alone; the others are independent: in parallel.
        order = list(range(len(self.mounts)))
        last = [i for i in order if self.mounts[i] == "/"]
        batches = [[i for i in order if i not in last], last]
        self.first_freeze = time.monotonic()
        try:
            for batch in batches:
                self._freeze_batch(batch)
        except BaseException:
            self._undo()
            raise
        self.log.info(f"froze {len(self.frozen)} filesystem(s): {', '.join(self.mounts)}")
        return self

    def _freeze_batch(self, batch: List[int]) -> None:
        if not batch:
            return
        if self.fired():
            raise FreezeError("freeze timed out: the watchdog thawed before all mounts were "
                              "frozen", Code.FREEZE_TIMEOUT)
        for index in batch:
            self._tell(f"freeze {index}")  # before the ioctl: a death right after is covered
        with ThreadPoolExecutor(max_workers=min(8, len(batch))) as pool:
            errors = list(pool.map(lambda i: _ioctl(self._fds[i], FIFREEZE), batch))
        failed = []
        for index, error in zip(batch, errors):
            if error is None:
                self.frozen.append(self._fds[index])
            else:
                self._tell(f"skip {index}")  # e.g. EBUSY: frozen by someone else, not ours
                failed.append(f"{self.mounts[index]}: {error.strerror}")
        if failed:
            raise FreezeError("FIFREEZE failed: " + "; ".join(failed))

    def __exit__(self, *exc: object) -> None:
        self._undo()
        self.log.info(f"thawed {len(self.mounts)} filesystem(s); freeze window "
                      f"{self.window * 1000:.1f} ms"
                      + ("; the watchdog had thawed at the timeout" if self.watchdog_fired
                         else ""))

    def fired(self) -> bool:
        """True once the watchdog has thawed at its deadline (non-blocking check)."""
        if not self.watchdog_fired and self._dog is not None and self._dog.stdout is not None:
            ready, _, _ = select.select([self._dog.stdout], [], [], 0)
            if ready:
                line = self._dog.stdout.readline()
                self.watchdog_fired = line.startswith(b"timeout")
        return self.watchdog_fired

    def _tell(self, message: str) -> None:
        assert self._dog is not None and self._dog.stdin is not None
        self._dog.stdin.write(message.encode() + b"\n")
        self._dog.stdin.flush()

    def _start_watchdog(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = _ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH")
                                     else "")
        self._dog = subprocess.Popen(
            [sys.executable, "-B", "-m", "snapshot.watchdog"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd="/", env=env,
            start_new_session=True)  # survives a kill of the worker's process group
        setup = {"mounts": self.mounts, "timeout": self.timeout, "report": self.report_path}
        assert self._dog.stdin is not None and self._dog.stdout is not None
        self._dog.stdin.write(json.dumps(setup).encode() + b"\n")
        self._dog.stdin.flush()
        ready, _, _ = select.select([self._dog.stdout], [], [], READY_TIMEOUT)
        if not ready or self._dog.stdout.readline() != b"ready\n":
            self._stop_watchdog()
            self._close()
            raise FreezeError("the thaw watchdog did not start; nothing was frozen")

    def _undo(self) -> None:
        for fd in reversed(self.frozen):
            try:
                fcntl.ioctl(fd, FITHAW, 0)
            except OSError:
                pass  # EINVAL: the watchdog thawed it already
        self.last_thaw = time.monotonic()
        self.frozen = []
        self.fired()
        self._stop_watchdog()
        self._close()

    def _stop_watchdog(self) -> None:
        dog, self._dog = self._dog, None
        if dog is None:
            return
        try:
            assert dog.stdin is not None and dog.stdout is not None
            dog.stdin.write(b"done\n")
            dog.stdin.flush()
            dog.stdin.close()
            tail = dog.stdout.read()
            self.watchdog_fired = self.watchdog_fired or tail.startswith(b"timeout")
        except OSError:
            pass
        try:
            dog.wait(10)
        except subprocess.TimeoutExpired:
            dog.kill()
            dog.wait()

    def _close(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds = []


def _ioctl(fd: int, request: int) -> Optional[OSError]:
    try:
        fcntl.ioctl(fd, request, 0)
    except OSError as exc:
        return exc
    return None


def _presync(fds: Sequence[int], bound: float) -> bool:
    """syncfs(2) every mount in parallel for at most `bound` seconds; True if all finished.
    Failures only cost a longer freeze; a sync still running is left to finish on its own."""
    syncfs = getattr(_LIBC, "syncfs", None)
    if syncfs is None:
        return True
    threads = [threading.Thread(target=syncfs, args=(fd,), daemon=True) for fd in fds]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + bound
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return not any(thread.is_alive() for thread in threads)


def read_watchdog_report(path: str) -> Optional[dict]:
    """The watchdog's record of a forced thaw (worker death, timeout, signal), if any."""
    try:
        with open(path, encoding="utf-8") as stream:
            report = json.load(stream)
    except (OSError, ValueError):
        return None
    return report if isinstance(report, dict) else None
