"""Faults around FIFREEZE: a signal while it hangs, a timeout before it completes, a dead
watchdog, someone else's freeze. Every filesystem must end up writable, and only ours thawed."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from devtools.blkthrottle import (
    WriteThrottle,
    dirty,
    fifreeze_in_flight,
    freeze,
    thaw_if_frozen,
    unwritable,
)
from plumbing.crashpoints import TRACE_VARIABLE, read_trace
from snapshot.errors import FreezeError
from snapshot.freeze import Freezer, read_watchdog_report
from snapshot.log import BufferedLog
from tests.snapshot.conftest import make_disks, settings_dicts, wait_for, write_vmbackup_conf

pytestmark = pytest.mark.root
ROOT = Path(__file__).resolve().parents[2]
FSTYPES = ["ext4", "xfs"]


@pytest.fixture
def throttle(loopfs):
    """Throttles a loop device's writes; always lifted before the filesystems are torn down."""
    made = []

    def make(device: str) -> WriteThrottle:
        made.append(WriteThrottle(device))
        return made[-1]

    yield make
    for each in made:
        each.lift()


def start_worker(tmp_path: Path, confdir: Path, azurite, mounts, timeout: float,
                 report: Path) -> subprocess.Popen:
    """`python -m snapshot run-for-test` freezing exactly `mounts`; its log goes to tmp_path."""
    write_vmbackup_conf(confdir, mounts, timeout=timeout,
                        extra=f"WatchdogReport = {report}\nSnapshotTimeout = 30\n")
    public, protected = settings_dicts(make_disks(azurite, 1))
    (tmp_path / "public.json").write_text(json.dumps(public))
    (tmp_path / "protected.json").write_text(json.dumps(protected))
    env = dict(os.environ, PYTHONPATH=str(ROOT),
               VMSNAPSHOT_CONF=str(confdir / "vmbackup.conf"),
               VMSNAPSHOT_PLUGIN_CONFIG=str(confdir / "none.json"),
               VMSNAPSHOT_WORKLOAD_CONF=str(confdir / "none.conf"))
    env[TRACE_VARIABLE] = str(tmp_path / "crash.trace")
    with open(tmp_path / "worker.log", "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "snapshot", "run-for-test", "--public",
             str(tmp_path / "public.json"), "--protected", str(tmp_path / "protected.json"),
             "--attempts", "1"], env=env, cwd=str(ROOT), stdout=subprocess.PIPE, stderr=log)


def hang_a_freeze(loopfs, throttle, fstype: str):
    """A healthy filesystem and one whose FIFREEZE will hang: ~40 MB dirty behind a 4 KiB/s
    write throttle. The freeze timeout also bounds the pre-freeze syncfs (which would hang too),
    so FIFREEZE is reached after `timeout` seconds and then blocks in the kernel."""
    healthy, hung = loopfs(fstype), loopfs(fstype)
    limit = throttle(hung.device)
    dirty(hung.mountpoint)
    return healthy.mountpoint, hung.mountpoint, limit


@pytest.mark.parametrize("fstype", FSTYPES)
def test_sigterm_while_a_fifreeze_hangs_leaves_nothing_frozen(loopfs, throttle, azurite, confdir,
                                                             tmp_path, fstype):
    healthy, hung, limit = hang_a_freeze(loopfs, throttle, fstype)
    timeout = 5.0
    worker = start_worker(tmp_path, confdir, azurite, [healthy, hung], timeout,
                          tmp_path / "watchdog.json")
    try:
        assert wait_for(lambda: fifreeze_in_flight(worker.pid, hung), timeout=timeout + 30), \
            "the FIFREEZE of the throttled filesystem should block in the kernel"
        worker.send_signal(signal.SIGTERM)
        limit.lift()  # the hung FIFREEZE now completes: after the worker gave up
        assert wait_for(lambda: not fifreeze_in_flight(worker.pid), timeout=30), \
            "every FIFREEZE completes once the throttle is lifted"
        assert unwritable([healthy, hung], timeout + 1.0) == [], \
            "every filesystem must be writable within the watchdog deadline + 1 s"
        out, _ = worker.communicate(timeout=60)
        status = json.loads(out)[0]["status"]
        assert status["status"] == "error" and "signal 15" in \
            status["formattedMessage"]["message"], status
    finally:
        limit.lift()
        worker.kill()
        worker.wait(60)


@pytest.mark.parametrize("fstype", FSTYPES)
def test_timeout_while_a_fifreeze_hangs_then_worker_killed_leaves_nothing_frozen(
        loopfs, throttle, azurite, confdir, tmp_path, fstype):
    healthy, hung, limit = hang_a_freeze(loopfs, throttle, fstype)
    timeout = 2.0
    report = tmp_path / "watchdog.json"
    worker = start_worker(tmp_path, confdir, azurite, [healthy, hung], timeout, report)
    try:
        assert wait_for(lambda: fifreeze_in_flight(worker.pid, hung), timeout=timeout + 30), \
            "the FIFREEZE of the throttled filesystem should block in the kernel"
        assert wait_for(lambda: unwritable([healthy], 0.2) == [healthy], timeout=timeout), \
            "the healthy filesystem should be frozen"
        assert unwritable([healthy], timeout + 1.0) == [], \
            "at the deadline the healthy filesystem is thawed, though another FIFREEZE hangs"
        assert wait_for(report.exists, timeout=5), "the watchdog reports its timeout thaw"
        assert read_watchdog_report(str(report))["reason"] == "timeout"
        # No mountpoint filter: the worker's main thread may have exited by now, and its fds
        # are no longer readable through /proc/<pid>/fd; the healthy one's FIFREEZE returned.
        assert fifreeze_in_flight(worker.pid), "the FIFREEZE still hangs: it completes late"
        worker.kill()
        limit.lift()
        assert wait_for(lambda: not fifreeze_in_flight(worker.pid), timeout=30), \
            "every FIFREEZE completes once the throttle is lifted"
        assert unwritable([healthy, hung], timeout + 1.0) == [], \
            "the late FIFREEZE of a killed worker must be thawed (the watchdog lingers)"
        dogs = [pid for pid, name in read_trace(str(tmp_path / "crash.trace"))
                if name == "snapshot.freeze.watchdog_started"]
        assert len(dogs) == 1 and wait_for(lambda: not psutil.pid_exists(dogs[0])
                                           or psutil.Process(dogs[0]).status() == "zombie",
                                           timeout=10), "the watchdog ends with the worker"
    finally:
        limit.lift()
        worker.kill()
        worker.wait(60)


def watchdog_of_this_process() -> psutil.Process:
    dogs = []
    for child in psutil.Process().children():
        try:
            if "snapshot.watchdog" in " ".join(child.cmdline()):
                dogs.append(child)
        except psutil.Error:
            continue  # exited (a zombie of an earlier test's process)
    (dog,) = dogs
    return dog


@pytest.mark.parametrize("fstype", FSTYPES)
def test_worker_thaws_at_once_when_its_watchdog_dies(loopfs, fstype):
    mounts = [loopfs(fstype).mountpoint, loopfs(fstype).mountpoint]
    with pytest.raises(FreezeError) as failed:
        with Freezer(mounts, timeout=60, log=BufferedLog()):
            watchdog_of_this_process().kill()
            assert unwritable(mounts, 1.0) == [], \
                "the worker must thaw at once when its watchdog is gone"
    assert failed.value.code == 121 and "watchdog" in failed.value.message, failed.value.message


@pytest.mark.parametrize("fstype", FSTYPES)
def test_a_filesystem_someone_else_froze_is_never_thawed(loopfs, fstype):
    ours, theirs = loopfs(fstype).mountpoint, loopfs(fstype).mountpoint
    freeze(theirs)
    with pytest.raises(FreezeError) as failed:
        with Freezer([ours, theirs], timeout=30, log=BufferedLog()):
            pass
    assert "busy" in failed.value.message.lower(), failed.value.message
    assert unwritable([ours], 1.0) == [], "ours is thawed after the failed freeze"
    assert thaw_if_frozen(theirs), "a mount frozen by someone else must never be thawed by us"


def test_crash_points_trace_every_step_of_the_freeze(loopfs, tmp_path, monkeypatch):
    trace = tmp_path / "crash.trace"
    monkeypatch.setenv(TRACE_VARIABLE, str(trace))
    mounts = [loopfs("ext4").mountpoint, loopfs("xfs").mountpoint]
    with Freezer(mounts, timeout=30, log=BufferedLog()):
        pass
    steps = [name for _, name in read_trace(str(trace))]
    freezes = sorted(steps[1:5])
    assert steps[0] == "snapshot.freeze.watchdog_started" and steps[1].endswith("before_ioctl"), \
        steps
    assert freezes == ["snapshot.freeze.after_ioctl"] * 2 + ["snapshot.freeze.before_ioctl"] * 2, \
        f"a point before and after each FIFREEZE (in parallel): {steps}"
    assert steps[5:] == ["snapshot.freeze.before_thaw", "snapshot.freeze.after_thaw"] * 2, steps
