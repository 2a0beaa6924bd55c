"""Freeze chosen mounts under a thaw watchdog process; thaw in reverse order in `finally`.

A frozen filesystem is always thawed, whatever happens to this process or to the watchdog, and
never one someone else froze (the watchdog's rules: snapshot/watchdog.py; the whole argument:
README, "Why a frozen filesystem is always thawed"). Here: each claim is told before its
FIFREEZE and its outcome the moment the ioctl returns, before anything else; FIFREEZE runs in
signal-free threads; a timer thaws at our own deadline whatever the watchdog does; after the
watchdog's forced thaw what we froze is its to thaw; a FIFREEZE still in flight when we give up
thaws itself when it returns (`abandoned`); and if the watchdog ends while one is in flight, a
new watchdog is started and told of it (if none can be, this process waits for it at exit).
"""
from __future__ import annotations

import atexit
import ctypes
import fcntl
import json
import os
import signal
import threading
import time
from collections.abc import Sequence
from typing import Any, Optional

from plumbing.crashpoints import crashpoint
from snapshot.errors import Code, FreezeError
from snapshot.log import BufferedLog
from snapshot.signalsafe import deferred_signals, start_quiet_thread
from snapshot.watchdog import FIFREEZE, FITHAW
from snapshot.watchdoglink import WatchdogLink

_LIBC = ctypes.CDLL(None, use_errno=True)
_POLL = 0.1  # how often the main thread looks at the watchdog while a FIFREEZE runs
EXPIRY_GRACE = 0.25  # our own deadline trails the watchdog's: it normally thaws first
REWATCH_LIMIT = 2  # new watchdogs started for in-flight FIFREEZEs after one was lost


class Freezer:
    """Context manager: spawns the watchdog, freezes `mounts` in order, thaws them in reverse."""

    def __init__(self, mounts: Sequence[str], timeout: float, log: BufferedLog,
                 report_path: Optional[str] = None) -> None:
        self.mounts = list(mounts)
        self.timeout = timeout
        self.log = log
        self.report_path = report_path
        self.first_freeze = 0.0
        self.last_thaw = 0.0
        self._fds: list[int] = []
        self._link: Optional[WatchdogLink] = None  # the first watchdog: the freeze holds with it
        self._dog: Optional[WatchdogLink] = None  # where claims are told now (it, or a successor)
        self._book = threading.Condition()  # guards everything below
        self._in_flight: set[int] = set()  # claimed, FIFREEZE outcome not booked yet
        self._ours: list[int] = []  # mounts our FIFREEZE froze and we are to thaw, in order
        self._handed: list[int] = []  # frozen by us, the watchdog's to thaw (it forced a thaw)
        self._failed: dict[int, str] = {}
        self._abandoned = False  # nobody waits for in-flight FIFREEZEs: they thaw themselves
        self._expired = False  # our own deadline thawed
        self._over = threading.Event()  # thawed and told: our deadline stands down
        self._rewatches = 0
        self._exit_wait = False

    @property
    def window(self) -> float:
        """Seconds from the first FIFREEZE to the last FITHAW."""
        return max(0.0, self.last_thaw - self.first_freeze)

    @property
    def in_flight(self) -> bool:
        """A FIFREEZE of ours has not returned yet (it thaws itself when it does)."""
        with self._book:
            return bool(self._in_flight)

    @property
    def watchdog_fired(self) -> bool:
        """True once the watchdog has thawed at its deadline."""
        return self._link is not None and self._link.fired.is_set()

    @property
    def timed_out(self) -> bool:
        """True once the freeze timeout thawed (the watchdog's deadline or our own)."""
        return self.watchdog_fired or self._expired

    def fired(self) -> bool:
        """Non-blocking check of `timed_out`."""
        return self.timed_out

    def __enter__(self) -> Freezer:  # noqa: PYI034
        self._open()
        try:
            # Flush dirty data before the clock starts (a shorter FIFREEZE), but only for the
            # freeze timeout: a sync that hangs would hang the FIFREEZE too, which is bounded.
            if not _presync(self._fds, self.timeout):
                self.log.warning(f"syncfs did not finish within {self.timeout:g}s; "
                                 "freezing anyway")
            link = WatchdogLink(self.mounts, self.timeout, self.report_path)
            for note in link.start(self._watchdog_lost, self._watchdog_forced):
                self.log.warning(f"thaw watchdog: {note} (freezing anyway: it still thaws on "
                                 "our death, its deadline and signals)")
            self._link = self._dog = link
        except BaseException:
            self._close()
            raise
        # Real monotonic time, not an injected clock: the watchdog (its own process) thaws on
        # the same clock, and a frozen filesystem hangs the VM in real time.
        start_quiet_thread(self._expire_at, link.ready_at + self.timeout + EXPIRY_GRACE)
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
        self.log.info(f"froze {len(self.mounts)} filesystem(s): {', '.join(self.mounts)}")
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self._undo()
        self.log.info(f"thawed {len(self.mounts)} filesystem(s); freeze window "
                      f"{self.window * 1000:.1f} ms"
                      + ("; the freeze timeout had thawed them already" if self.timed_out
                         else ""))
        assert self._link is not None
        if exc_type is None and self._link.broken and not self.timed_out:
            raise FreezeError(f"the freeze did not hold: {self._link.broken}; filesystems were "
                              "thawed before the snapshot finished", Code.FREEZE_FAILED)

    def _freeze_batch(self, batch: list[int]) -> None:
        if not batch:
            return
        self._check()
        with deferred_signals(), self._book:  # a claim and its FIFREEZE thread go together
            for index in batch:
                if self._dog is None or not self._dog.tell(f"freeze {index}"):
                    raise FreezeError("the thaw watchdog is gone; nothing more is frozen")
                self._in_flight.add(index)
                start_quiet_thread(self._freeze_one, index)
        with self._book:
            while self._in_flight and not self._failed and not self._stopped():
                self._book.wait(_POLL)  # a signal handler may raise here: _undo copes
            failed = dict(self._failed)
        self._check()
        if failed:
            raise FreezeError("FIFREEZE failed: " + "; ".join(
                f"{self.mounts[i]}: {why}" for i, why in sorted(failed.items())))

    def _stopped(self) -> bool:
        return self.timed_out or bool(self._link is not None and self._link.broken)

    def _check(self) -> None:
        assert self._link is not None
        if self.timed_out:
            raise FreezeError("freeze timed out: the filesystems were thawed before all mounts "
                              "were frozen", Code.FREEZE_TIMEOUT)
        if self._link.broken:
            raise FreezeError(f"the freeze did not hold: {self._link.broken}")

    def _freeze_one(self, index: int) -> None:
        """In a signal-free thread: FIFREEZE one claimed mount, tell the outcome, book it."""
        crashpoint("snapshot.freeze.before_ioctl")
        error = _ioctl(self._fds[index], FIFREEZE)
        outcome = f"frozen {index}" if error is None else f"skip {index}"
        told = self._dog
        if told is not None:
            told.tell(outcome)  # first of all: the watchdog knows whose freeze this is
        crashpoint("snapshot.freeze.after_ioctl")  # told, not yet booked
        with self._book:
            if self._dog is not told and self._dog is not None:
                self._dog.tell(outcome)  # a successor took over meanwhile
            self._in_flight.discard(index)
            if error is None:
                self._ours.append(index)
            else:
                self._failed[index] = error.strerror or str(error)
            if self._abandoned:
                self._late_return()
            self._book.notify_all()

    def _late_return(self) -> None:
        """A FIFREEZE that returned after we gave up: nobody else here thaws it. Book held."""
        self._thaw_ours()
        if not self._in_flight and self._dog is not None:
            self._dog.done_from_thread()
            self._close()

    def _undo(self) -> None:
        """Thaw what we froze; `done` if nothing is in flight, else leave the rest to `linger`."""
        with deferred_signals(), self._book:
            pending = bool(self._in_flight)  # read *before* the thaw: a FIFREEZE that ends
            self._abandoned = self._abandoned or pending  # after it thaws itself
            self._thaw_ours()
            self.last_thaw = time.monotonic()
            self._over.set()
            dog = self._dog
            if pending and dog is not None:
                dog.linger()
        if not pending:
            if dog is not None:
                dog.finish()
            self._close()

    def _thaw_ours(self) -> None:
        for index in reversed(self._ours):
            crashpoint("snapshot.freeze.before_thaw")
            try:
                fcntl.ioctl(self._fds[index], FITHAW, 0)
            except OSError:
                pass  # EINVAL: thawed already (by the watchdog)
            if self._dog is not None:
                self._dog.tell(f"thawed {index}")
            crashpoint("snapshot.freeze.after_thaw")
        self._ours = []

    def _expire_at(self, deadline: float) -> None:
        """Our own deadline (a quiet thread): thaw, whatever the watchdog does."""
        if self._over.wait(max(0.0, deadline - time.monotonic())):
            return
        with self._book:
            if not self._over.is_set():
                self._expired = self._abandoned = True
                self._thaw_ours()
                self._book.notify_all()

    def _watchdog_forced(self) -> None:
        """The watchdog made a forced thaw: what we froze so far is its to thaw now."""
        with self._book:
            self._handed += self._ours
            self._ours = []
            self._book.notify_all()

    def _watchdog_lost(self, link: WatchdogLink) -> None:
        """A watchdog ended while we count on it: thaw now (what it had taken over too, unless
        it left on purpose); a FIFREEZE still in flight gets a successor."""
        with self._book:
            if link is not self._dog:
                return  # an earlier one: its successor watches
            self._abandoned = True
            if not link.ended:
                self._ours, self._handed = self._handed + self._ours, []
            self._thaw_ours()
            if self._in_flight:
                self._rewatch()
            self._book.notify_all()

    def _rewatch(self) -> None:
        """A new watchdog for the FIFREEZEs in flight; else wait for them at exit. Book held."""
        if self._rewatches < REWATCH_LIMIT:
            self._rewatches += 1
            dog = WatchdogLink(self.mounts, self.timeout, self.report_path)
            try:
                dog.start(self._watchdog_lost, self._watchdog_forced)
            except FreezeError as exc:
                self.log.warning(f"a FIFREEZE is in flight and no new thaw watchdog: {exc}")
            else:
                for index in sorted(self._in_flight):
                    dog.tell(f"freeze {index}")
                dog.linger()
                self._dog = dog
                self.log.warning("the thaw watchdog ended while a FIFREEZE was in flight: a "
                                 "new one watches it")
                return
        if not self._exit_wait:
            self._exit_wait = True
            atexit.register(self._wait_for_late_freezes)

    def _wait_for_late_freezes(self) -> None:
        """At exit, with no watchdog for them: wait until our FIFREEZEs in flight have returned
        (each thaws its own: abandoned). No signal handler may cut the wait short."""
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)
        with self._book:
            while self._in_flight:
                self._book.wait()

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
    deadline = time.monotonic() + bound  # bounds the kernel's syncfs: real time
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return not any(thread.is_alive() for thread in threads)


def read_watchdog_report(path: str) -> Optional[dict[str, Any]]:
    """The watchdog's record of a forced thaw (worker death, timeout, signal), if any."""
    try:
        with open(path, encoding="utf-8") as stream:
            report = json.load(stream)
    except (OSError, ValueError):
        return None
    return report if isinstance(report, dict) else None
