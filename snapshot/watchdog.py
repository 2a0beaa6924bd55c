"""The thaw watchdog process: thaws what its worker froze, or may have, on timeout, on the worker's
death, on any signal it can catch and on its own error; it never thaws a freeze it cannot
attribute to its worker.

Protocol, one line each. Worker -> watchdog (stdin): a JSON setup line; `freeze I` *before* the
FIFREEZE of mount I (a claim, outcome unknown); `frozen I` the moment that FIFREEZE succeeded
(ours); `skip I` when it failed (EBUSY: someone else's freeze, never thawed by us); `thawed I`
after the worker's own FITHAW of I (ours no more); `linger` (the worker gave up while a FIFREEZE
of its own is in flight); `done` (everything thawed, nothing in flight). EOF on stdin: the worker
is gone; it arrives only once the worker's last thread released the pipe, so every FIFREEZE of
its own has returned by then. Watchdog -> worker (stdout): `note TEXT` lines, `ready` (the clock
starts), `REASON thawed=N` for each forced thaw (`timeout`, `signal N`, `linger`, `error`),
`late thawed=N` when it thawed a late FIFREEZE the worker did not report thawed in time, `end`
when it leaves a worker that lives, and a last `done|died thawed=N`.

What it thaws, one FITHAW each and never on a timer: at a forced thaw (deadline, `linger`, a
signal, an error of its own) every claim that is ours or unknown; after one, a claim reported
`frozen` and not `thawed` (the worker thaws a late freeze itself) within LATE_GRACE; at EOF every
claim still ours or unknown. Unknown at EOF means the
worker died in the few instructions between a claim and its FIFREEZE, or between the FIFREEZE's
return and its report: thawing then is the lesser harm (a filesystem of ours left frozen hangs
the VM; a foreign freeze thawed early costs its owner consistency). After a forced thaw it stays
only while a claim is unknown (a FIFREEZE in flight), then says `end` and exits: a later freeze
of the same filesystem (the next backup's) is never its business.

Before `ready` it opens its own fds on every mount, finishes every import and leaves the
extension's cgroups (snapshot.cgroupescape), so nothing it does later reads a file that may be
frozen and a kill of the extension's cgroup does not reach it. FITHAW runs in one thread per
mount: a FITHAW waits while a FIFREEZE of the same filesystem syncs (both take the superblock
lock; it then thaws that freeze as it completes), and must not hold up the thaw of the others.
Its stderr is /dev/null: an error of its own is thawed around and recorded in the report file.
"""
from __future__ import annotations

import fcntl
import json
import os
import select
import signal
import sys
import threading
import time  # the real clock only: this process must not depend on the worker's (see above)
from typing import Any, Optional

from plumbing.crashpoints import crashpoint
from plumbing.files import write_atomic
from snapshot.cgroupescape import move_to_roots
from snapshot.signalsafe import start_quiet_thread

FIFREEZE = 0xC0045877
FITHAW = 0xC0045878
THAW_WAIT = 0.5  # how long a forced thaw waits for FITHAWs to report (not to run)
# After a forced thaw, the worker thaws a late FIFREEZE itself the instant it returns and tells
# `frozen I` then `thawed I`; the watchdog thaws it only if `thawed I` has not come within this
# time (a worker stopped or dead in between). Thawing on `frozen I` alone could thaw the next
# freeze of that filesystem (the next backup's) when the watchdog reads its lines late.
LATE_GRACE = 1.0
IN_FLIGHT, OURS = "in flight", "ours"  # a claim: FIFREEZE outcome unknown / succeeded
_CLAIM_WORDS = ("freeze", "frozen", "skip", "thawed")
_UNCATCHABLE = {"SIGKILL", "SIGSTOP", "SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL", "SIGCHLD",
                "SIGCONT", "SIGURG", "SIGWINCH"}
_IGNORED = {"SIGPIPE", "SIGTSTP", "SIGTTIN", "SIGTTOU"}  # never stop or die of these
_REASONS = {"linger": "the worker gave up while a FIFREEZE was in flight"}  # for the report


def thaw_all(fds: list[int]) -> list[int]:
    """FITHAW every fd, last first, in this thread; returns the fds that were frozen."""
    thawed = []
    for fd in reversed(fds):
        try:
            fcntl.ioctl(fd, FITHAW, 0)
            thawed.append(fd)
        except OSError:
            pass  # EINVAL: not frozen (already thawed by the worker)
    return thawed


class Thawer:
    """FITHAW mounts in parallel threads, at most one in flight per mount."""

    def __init__(self, fds: list[int]) -> None:
        self._fds = fds
        self._lock = threading.Lock()
        self._busy: set[int] = set()

    def thaw(self, indices: set[int], wait: float) -> list[int]:
        """Start a FITHAW of each index (last first); those that thawed within `wait` s."""
        results: dict[int, bool] = {}
        threads = []
        for index in sorted(indices, reverse=True):
            with self._lock:
                if index in self._busy:
                    continue  # still waiting behind an in-flight FIFREEZE: it thaws that too
                self._busy.add(index)
            threads.append(start_quiet_thread(self._one, index, results))
        deadline = time.monotonic() + wait
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            return sorted(i for i, ok in results.items() if ok)

    def _one(self, index: int, results: dict[int, bool]) -> None:
        ok = bool(thaw_all([self._fds[index]]))
        with self._lock:
            results[index] = ok
            self._busy.discard(index)


class ProtocolError(Exception):
    """The worker sent a line the watchdog does not understand."""


class Watchdog:
    """One freeze's watchdog: its mounts, their fds, what the worker claimed."""

    def __init__(self, setup: dict[str, Any], pending: bytes) -> None:
        self.mounts = [str(m) for m in setup["mounts"]]
        self.timeout = float(setup["timeout"])
        self.report: Optional[str] = setup.get("report") or None
        self.fds = [os.open(m, os.O_RDONLY | os.O_DIRECTORY) for m in self.mounts]
        self.thawer = Thawer(self.fds)
        self.claims: dict[int, str] = {}  # mount index -> IN_FLIGHT (outcome unknown) | OURS
        self.late: dict[int, float] = {}  # a late `frozen I` -> when to thaw I ourselves
        self.ever_claimed = False
        self.forced = ""  # the first forced thaw's reason; from then on `frozen I` thaws I
        self.started = False
        self._pending = pending
        self._events: list[str] = []  # `done`/`linger` read, not yet acted on
        self._settled = False  # a claim was resolved since the loop last looked
        self._signal: Optional[str] = None  # a signal noted while the lines before it are read
        self._writers: list[threading.Thread] = []
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)

    def run(self) -> None:
        for note in move_to_roots():
            self.say(f"note {note}")
        self._catch_signals()
        crashpoint("snapshot.freeze.watchdog_started")
        deadline = time.monotonic() + self.timeout
        self.started = True
        self.say("ready")
        self.watch(deadline)

    def watch(self, deadline: Optional[float], tolerant: bool = False) -> None:
        """Until `done`, the worker's death, or (after a forced thaw) no claim is unknown."""
        while True:
            if self.forced and IN_FLIGHT not in self.claims.values() and not self.late:
                self.say("end")  # nothing of ours is frozen, or can still be
                return
            event = self.next_event(self._wait_until(deadline), tolerant)
            if event == "done":  # the worker thawed all; anything still ours is thawed anyway
                ours = {i for i, state in self.claims.items() if state == OURS} | set(self.late)
                self.say(f"done thawed={len(self.thawer.thaw(ours, THAW_WAIT))}")
                return
            if event == "died":
                thawed = self.thaw_claimed(THAW_WAIT)
                self.say(f"died thawed={len(thawed)}")
                if not self.forced:
                    self.write_report("died", thawed)
                return
            if event == "timeout" and self.forced:
                self.thaw_late()
            elif event != "settled":
                self.force(event)

    def _wait_until(self, deadline: Optional[float]) -> Optional[float]:
        """Before a forced thaw, the freeze's deadline; after it, the next late grace's end."""
        if not self.forced:
            return deadline
        return min(self.late.values()) if self.late else None

    def thaw_late(self) -> None:
        """Late freezes whose `thawed I` did not come within the grace: ours to thaw."""
        now = time.monotonic()
        due = {i for i, until in self.late.items() if until <= now}
        for index in due:
            del self.late[index]
        thawed = self.thawer.thaw(due, 0.0)
        self.say(f"late thawed={len(thawed)}")

    def force(self, reason: str) -> None:
        """A forced thaw: every claim that is ours or unknown, once; the unknown stay tracked."""
        thawed = self.thaw_claimed(THAW_WAIT)
        self.claims = {i: state for i, state in self.claims.items() if state == IN_FLIGHT}
        self.late = {}
        self.say(f"{reason} thawed={len(thawed)}")
        if not self.forced:
            self.forced = reason
            self.write_report(_REASONS.get(reason, reason), thawed)

    def thaw_claimed(self, wait: float) -> list[str]:
        return [self.mounts[i] for i in self.thawer.thaw(set(self.claims) | set(self.late),
                                                          wait)]

    def next_event(self, deadline: Optional[float], tolerant: bool = False) -> str:
        """'done', 'linger', 'died' (EOF), 'signal N', 'timeout', or 'settled' (a claim was
        resolved after a forced thaw); applies claims on the way."""
        while True:
            event = self._take_lines(tolerant)
            if event:
                return event
            if self._signal is not None:
                signal_event, self._signal = self._signal, None
                return signal_event
            if self._settled and self.forced:
                self._settled = False
                return "settled"
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([0, self._wake_r], [], [], left)
            if self._wake_r in ready:
                signums = os.read(self._wake_r, 64)
                if signums:
                    # Lines the worker wrote before the signal count first (a `skip I` in the
                    # pipe means claim I is not ours: it must not be thawed).
                    self._signal = f"signal {signums[0]}"
                    self._read_ready_lines()
                    continue
            if 0 in ready:
                data = os.read(0, 4096)
                if not data:
                    return self._take_lines(tolerant) or "died"
                self._pending += data
                continue  # the worker's lines count before the clock does
            if left == 0.0:
                return "timeout"

    def _read_ready_lines(self) -> None:
        """What the worker has written and we have not read yet, without waiting for more."""
        while select.select([0], [], [], 0)[0]:
            data = os.read(0, 4096)
            if not data:
                return  # EOF: the next wait reports it
            self._pending += data

    def _take_lines(self, tolerant: bool) -> str:
        """Apply every claim line read so far before acting on an event: what a forced thaw
        thaws must be what the worker last said (lines read late, by a stopped or starved
        watchdog, may already say `frozen I` then `thawed I`)."""
        while b"\n" in self._pending:
            line, self._pending = self._pending.split(b"\n", 1)
            words = line.decode("ascii", "replace").split()
            if words in (["done"], ["linger"]):
                self._events.append(words[0])
                continue
            if len(words) != 2 or words[0] not in _CLAIM_WORDS or not words[1].isdigit() \
                    or int(words[1]) >= len(self.fds):
                if tolerant:
                    continue
                raise ProtocolError(f"unexpected line from the worker: {line[:80]!r}")
            self._claim(words[0], int(words[1]))
        return self._events.pop(0) if self._events else ""

    def _claim(self, word: str, index: int) -> None:
        if word == "freeze":
            self.claims[index] = IN_FLIGHT
            self.ever_claimed = True
            return
        self._settled = True
        if word == "frozen" and not self.forced:
            self.claims[index] = OURS
            return
        self.claims.pop(index, None)  # skip, thawed, or frozen after a forced thaw:
        if word == "frozen":  # a late FIFREEZE: the worker thaws it and says so, else we do
            self.late[index] = time.monotonic() + LATE_GRACE
        elif word == "thawed":
            self.late.pop(index, None)

    def _catch_signals(self) -> None:
        """Every catchable signal wakes the wait loop (set_wakeup_fd); none raises anywhere."""
        for sig in signal.valid_signals():
            try:
                name = signal.Signals(sig).name
            except ValueError:
                name = ""  # a real-time signal between SIGRTMIN and SIGRTMAX
            if name in _UNCATCHABLE:
                continue
            try:
                signal.signal(sig, signal.SIG_IGN if name in _IGNORED else _noted)
            except (OSError, ValueError, RuntimeError):
                pass  # reserved by the C library
        signal.set_wakeup_fd(self._wake_w)

    def say(self, line: str) -> None:
        try:
            os.write(1, line.encode() + b"\n")
        except OSError:
            pass  # the worker is gone

    def write_report(self, reason: str, thawed: list[str]) -> None:
        """In a thread: the report's filesystem may be frozen again by a late FIFREEZE, and
        that must never stop this process from thawing."""
        if self.report and self.ever_claimed:
            self._writers.append(start_quiet_thread(_write_report, self.report, reason, thawed))

    def finish(self) -> None:
        for writer in self._writers:
            writer.join(2.0)

    def last_words(self, exc: BaseException) -> None:
        """An error of our own: thaw what is ours or unknown, say so, then watch on as after
        any forced thaw, skipping lines we cannot read."""
        claimed = [self.fds[i] for i in sorted(set(self.claims) | set(self.late))]
        try:
            thawed = self.thaw_claimed(THAW_WAIT)
            self.claims = {i: s for i, s in self.claims.items() if s == IN_FLIGHT}
            self.late = {}
            self.say(f"error thawed={len(thawed)}")
            if not self.forced:
                self.forced = "error"
                self.write_report(f"watchdog error: {type(exc).__name__}: {exc}"[:300], thawed)
            self.watch(None, tolerant=True)
        except BaseException:  # noqa: BLE001 - failing again: the plainest thaw there is
            thaw_all(claimed + [self.fds[i] for i in sorted(self.claims)])


def _noted(_signum: int, _frame: object) -> None:
    """The wakeup fd carries the signal to the wait loop; nothing to do here."""


def _write_report(path: str, reason: str, mounts: list[str]) -> None:
    try:
        write_atomic(path, json.dumps({"reason": reason, "thawed": mounts,
                                       "time": time.time()}).encode("utf-8"), mode=0o644)
    except OSError:
        pass  # nowhere to say it: the thaw is what matters


def _read_setup() -> tuple[dict[str, Any], bytes]:
    """The first line (JSON setup) and whatever followed it in the same read."""
    data = b""
    while b"\n" not in data:
        chunk = os.read(0, 4096)
        if not chunk:
            raise EOFError("no setup line")
        data += chunk
    line, rest = data.split(b"\n", 1)
    return json.loads(line), rest


def main() -> int:
    try:
        setup, rest = _read_setup()
        dog = Watchdog(setup, rest)
    except (OSError, ValueError, KeyError, TypeError, EOFError):
        return 2  # nothing claimed, nothing frozen: the worker sees EOF and does not freeze
    try:
        dog.run()
    except BaseException as exc:  # noqa: BLE001 - whatever happens, thaw before exiting
        if not dog.started:
            return 2
        dog.last_words(exc)
    dog.finish()
    return 0


if __name__ == "__main__":
    sys.exit(main())
