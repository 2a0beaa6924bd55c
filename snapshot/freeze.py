"""Freeze chosen mounts under a thaw watchdog process; thaw in reverse order in `finally`.

A frozen filesystem is always thawed, whatever happens to this process:
- claim before the act: mount I is recorded here and told to the watchdog (`freeze I`) before
  its FIFREEZE is issued, in a section no signal handler can split; an error result (EBUSY:
  someone else's freeze) withdraws the claim (`skip I`) and is never thawed by us;
- FIFREEZE runs in threads that block every signal, so signals land in the main thread and no
  ioctl is interrupted; the main thread never blocks on them without watching the watchdog;
- `done` is told only when nothing is in flight; a FIFREEZE still in flight when we give up
  (signal, timeout, error) may complete later, so we say `linger` instead and the watchdog keeps
  thawing until that thread has thawed its own late freeze and said `done`, or we are gone;
- if the watchdog itself dies while mounts are frozen, a listener thread thaws them at once.
"""
from __future__ import annotations

import ctypes
import fcntl
import json
import os
import threading
import time
from collections.abc import Sequence
from typing import Dict, List, Optional

from plumbing.crashpoints import crashpoint
from snapshot.errors import Code, FreezeError
from snapshot.log import BufferedLog
from snapshot.signalsafe import deferred_signals, start_quiet_thread
from snapshot.watchdog import FIFREEZE, FITHAW
from snapshot.watchdoglink import WatchdogLink

_LIBC = ctypes.CDLL(None, use_errno=True)
_POLL = 0.1  # how often the main thread looks at the watchdog while a FIFREEZE runs


class Freezer:
    """Context manager: spawns the watchdog, freezes `mounts` in order, thaws them in reverse."""

    def __init__(self, mounts: Sequence[str], timeout: float, log: BufferedLog,
                 report_path: str | None = None) -> None:
        self.mounts = list(mounts)
        self.timeout = timeout
        self.log = log
        self.report_path = report_path
        self.frozen: list[int] = []  # fds our FIFREEZE froze and nobody thawed yet, in order
        self.first_freeze = 0.0
        self.last_thaw = 0.0
        self._fds: list[int] = []
        self._link: WatchdogLink | None = None
        self._book = threading.Condition()  # guards the claim book below
        self._in_flight: set[int] = set()  # claimed, FIFREEZE not returned yet
        self._failed: Dict[int, str] = {}
        self._abandoned = False  # nobody waits for in-flight FIFREEZEs: they thaw themselves

    @property
    def window(self) -> float:
        """Seconds from the first FIFREEZE to the last FITHAW."""
        return max(0.0, self.last_thaw - self.first_freeze)

    @property
    def watchdog_fired(self) -> bool:
        """True once the watchdog has thawed at its deadline."""
        return self._link is not None and self._link.fired.is_set()

    @property
    def timed_out(self) -> bool:
        """True once the freeze timeout thawed the filesystems."""
        return self.watchdog_fired

    def fired(self) -> bool:
        """True once the watchdog has thawed at its deadline (non-blocking check)."""
        return self.watchdog_fired

    def __enter__(self) -> Freezer:  # noqa: PYI034
        self._open()
        try:
            # Flush dirty data before the clock starts (a shorter FIFREEZE), but only for the
            # freeze timeout: a sync that hangs would hang the FIFREEZE too, which is bounded.
            if not _presync(self._fds, self.timeout):
                self.log.warning(f"syncfs did not finish within {self.timeout:g}s; "
                                 "freezing anyway")
            link = WatchdogLink(self.mounts, self.timeout, self.report_path)
            for note in link.start(self._watchdog_lost):
                self.log.warning(f"thaw watchdog: {note} (freezing anyway: it still thaws on "
                                 "our death, its deadline and signals)")
            self._link = link
        except BaseException:
            self._close()
            raise
        # `/` (if chosen) is last and frozen alone; the others are independent: in parallel.
        last = [i for i, m in enumerate(self.mounts) if m == "/"]
        batches = [[i for i in range(len(self.mounts)) if i not in last], last]
        self.first_freeze = time.monotonic()
        try:
            for batch in batches:
                self._freeze_batch(batch)
        except BaseException:
            self._undo()
            raise
        self.log.info(f"froze {len(self.frozen)} filesystem(s): {', '.join(self.mounts)}")
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self._undo()
        self.log.info(f"thawed {len(self.mounts)} filesystem(s); freeze window "
                      f"{self.window * 1000:.1f} ms"
                      + ("; the watchdog had thawed at the timeout" if self.watchdog_fired
                         else ""))
        assert self._link is not None
        if exc_type is None and self._link.broken and not self.watchdog_fired:
            raise FreezeError(f"the freeze did not hold: {self._link.broken}; filesystems were "
                              "thawed before the snapshot finished", Code.FREEZE_FAILED)

    def _freeze_batch(self, batch: List[int]) -> None:
        if not batch:
            return
        self._check_watchdog()
        assert self._link is not None
        with deferred_signals(), self._book:  # a claim and its FIFREEZE thread go together
            for index in batch:
                if not self._link.tell(f"freeze {index}"):
                    raise FreezeError("the thaw watchdog is gone; nothing more is frozen")
                self._in_flight.add(index)
                start_quiet_thread(self._freeze_one, index)
        with self._book:
            while (self._in_flight and not self._failed and not self._link.fired.is_set()
                   and not self._link.broken):
                self._book.wait(_POLL)  # a signal handler may raise here: _undo copes
            failed = dict(self._failed)
        self._check_watchdog()
        if failed:
            raise FreezeError("FIFREEZE failed: " + "; ".join(
                f"{self.mounts[i]}: {why}" for i, why in sorted(failed.items())))

    def _check_watchdog(self) -> None:
        assert self._link is not None
        if self._link.fired.is_set():
            raise FreezeError("freeze timed out: the watchdog thawed before all mounts were "
                              "frozen", Code.FREEZE_TIMEOUT)
        if self._link.broken:
            raise FreezeError(f"the freeze did not hold: {self._link.broken}")

    def _freeze_one(self, index: int) -> None:
        """In a signal-free thread: FIFREEZE one claimed mount and book the result."""
        assert self._link is not None
        fd = self._fds[index]
        crashpoint("snapshot.freeze.before_ioctl")
        error = _ioctl(fd, FIFREEZE)
        crashpoint("snapshot.freeze.after_ioctl")  # frozen (or failed), not yet booked
        with self._book:
            self._in_flight.discard(index)
            if error is None:
                self.frozen.append(fd)
            else:
                self._failed[index] = error.strerror or str(error)
                self._link.tell(f"skip {index}")  # not ours: never thawed by us
            if self._abandoned:
                self._thaw_frozen()  # a late FIFREEZE: nobody else here will thaw it
                if not self._in_flight:
                    self._link.done_from_thread()
                    self._close()
            self._book.notify_all()

    def _undo(self) -> None:
        """Thaw what we froze; `done` if nothing is in flight, else leave the rest to `linger`."""
        link = self._link
        with deferred_signals(), self._book:
            pending = bool(self._in_flight)  # read *before* the thaw: a FIFREEZE that ends
            self._abandoned = self._abandoned or pending  # after it thaws itself
            self._thaw_frozen()
            self.last_thaw = time.monotonic()
            if pending and link is not None:
                link.linger()
        if not pending:
            if link is not None:
                link.finish()
            self._close()

    def _thaw_frozen(self) -> None:
        for fd in reversed(self.frozen):
            crashpoint("snapshot.freeze.before_thaw")
            try:
                fcntl.ioctl(fd, FITHAW, 0)
            except OSError:
                pass  # EINVAL: the watchdog thawed it already
            crashpoint("snapshot.freeze.after_thaw")
        self.frozen = []

    def _watchdog_lost(self) -> None:
        """The watchdog ended while we count on it: thaw now; late FIFREEZEs thaw themselves."""
        with self._book:
            self._abandoned = True
            self._thaw_frozen()
            self._book.notify_all()

    def _open(self) -> None:
        for mount in self.mounts:
            try:
                self._fds.append(os.open(mount, os.O_RDONLY | os.O_DIRECTORY))
            except OSError as exc:
                self._close()
                raise FreezeError(f"cannot open mount {mount}: {exc.strerror}",
                                  Code.CANNOT_OPEN_MOUNT) from None

    def _close(self) -> None:
        fds, self._fds = self._fds, []
        for fd in fds:
            os.close(fd)


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
    threads = [start_quiet_thread(syncfs, fd) for fd in fds]
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
