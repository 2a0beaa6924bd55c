"""Hunt: the watchdog is killed (or SIGTERMed: it thaws and exits) while a FIFREEZE hangs. The
worker fails the run and exits; a FIFREEZE in one of its daemon threads that completes after the
interpreter began to exit never runs the code that thaws it, and no watchdog is left: the
filesystem stays frozen for good."""
# ruff: noqa: F811 - fixtures imported so pytest finds them here
from __future__ import annotations

import os
import signal

import pytest

from devtools.blkthrottle import fifreeze_in_flight, thaw_if_frozen, unwritable
from plumbing.crashpoints import read_trace
from plumbing.procid import argv
from tests.snapshot.conftest import wait_for
from tests.snapshot.test_freeze_faults import hang_a_freeze, start_worker, throttle  # noqa: F401

pytestmark = pytest.mark.root

FREEZE_TIMEOUT = 10.0  # long enough to kill the watchdog before its own deadline


def run_ended(pid: int) -> bool:
    """The worker's main thread has exited (the process is a zombie leader, or gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stream:
            return stream.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["KILL", "TERM"])
def test_a_hung_fifreeze_is_thawed_when_the_watchdog_ends(loopfs, throttle, azurite, confdir,
                                                          tmp_path, signum):
    healthy, hung, limit = hang_a_freeze(loopfs, throttle, "ext4")
    worker = start_worker(tmp_path, confdir, azurite, [healthy, hung], FREEZE_TIMEOUT,
                          tmp_path / "watchdog.json")
    try:
        assert wait_for(lambda: fifreeze_in_flight(worker.pid, hung),
                        timeout=FREEZE_TIMEOUT + 30), "the FIFREEZE of the throttled fs hangs"
        (dog,) = [pid for pid, name in read_trace(str(tmp_path / "crash.trace"))
                  if name == "snapshot.freeze.watchdog_started"]
        assert "snapshot.watchdog" in argv(dog), argv(dog)
        os.kill(dog, signum)  # e.g. the OOM killer's pick, or a stray SIGTERM
        assert wait_for(lambda: run_ended(worker.pid), timeout=60), \
            "the worker gives up and exits (its hung FIFREEZE thread still in the kernel)"
        assert fifreeze_in_flight(worker.pid), "the FIFREEZE is still in flight"
        limit.lift()  # the storage recovers: the FIFREEZE completes
        worker.communicate(timeout=60)
        frozen = unwritable([healthy, hung], 2.0)
        assert frozen == [], (f"still frozen after the worker exited: "
                              f"{['healthy' if m == healthy else 'hung' for m in frozen]}")
    finally:
        limit.lift()
        worker.kill()
        worker.wait(60)
        thaw_if_frozen(healthy)
        thaw_if_frozen(hung)
