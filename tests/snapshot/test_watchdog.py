"""The thaw watchdog process driven through its own protocol: the test plays the worker."""
from __future__ import annotations

import errno
import json
import os
import select
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import List, Optional

import pytest

from devtools.blkthrottle import freeze, thaw_if_frozen, unwritable
from devtools.cgroups import TestCgroup
from snapshot.freeze import read_watchdog_report
from snapshot.watchdog import LATE_GRACE
from tests.snapshot.conftest import wait_for

pytestmark = pytest.mark.root
ROOT = Path(__file__).resolve().parents[2]


class Dog:
    """`python -m snapshot.watchdog` with the test as its worker."""

    def __init__(self, mounts: List[str], timeout: float, report: Optional[str] = None,
                 cgroup: Optional[TestCgroup] = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-B", "-m", "snapshot.watchdog"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd="/",
            env=dict(os.environ, PYTHONPATH=str(ROOT)), start_new_session=True,
            preexec_fn=cgroup.join_self if cgroup is not None else None)
        self.lines: List[str] = []
        self._buffer = b""
        self.send(json.dumps({"mounts": mounts, "timeout": timeout, "report": report}))
        assert self.wait_line("ready", 15), f"the watchdog should start: {self.lines}"

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def wait_line(self, prefix: str, timeout: float) -> bool:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()

        def seen() -> bool:
            while select.select([fd], [], [], 0)[0]:
                data = os.read(fd, 4096)
                if not data:
                    break
                self._buffer += data
                *done, self._buffer = self._buffer.split(b"\n")
                self.lines += [line.decode() for line in done]
            return any(line.startswith(prefix) for line in self.lines)
        return wait_for(seen, timeout=timeout)

    def worker_dies(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


def claim(dog: Dog, index: int, mount: str) -> None:
    """What the worker does: claim first, then FIFREEZE, then tell that it succeeded."""
    dog.send(f"freeze {index}")
    freeze(mount)
    dog.send(f"frozen {index}")


def claim_busy(dog: Dog, index: int, mount: str) -> None:
    """A mount someone else froze: our FIFREEZE fails with EBUSY, so the claim is withdrawn."""
    dog.send(f"freeze {index}")
    with pytest.raises(OSError) as busy:
        freeze(mount)
    assert busy.value.errno == errno.EBUSY, "a second FIFREEZE must fail with EBUSY"
    dog.send(f"skip {index}")


@pytest.mark.parametrize("fstype", ["ext4", "xfs"])
def test_timeout_thaws_claims_then_a_late_freeze_then_leaves(loopfs, tmp_path, fstype):
    ours, late, theirs = (loopfs(fstype).mountpoint for _ in range(3))
    freeze(theirs)
    report = tmp_path / "watchdog.json"
    timeout = 1.0
    dog = Dog([ours, late, theirs], timeout, str(report))
    try:
        claim(dog, 0, ours)
        dog.send("freeze 1")  # its FIFREEZE is still in flight at the deadline
        claim_busy(dog, 2, theirs)
        assert unwritable([ours], timeout + 1.0) == [], "thawed at the deadline"
        assert dog.wait_line("timeout", 5), f"the worker is told of the timeout: {dog.lines}"
        assert dog.proc.poll() is None, "it stays while a claim's FIFREEZE is in flight"
        freeze(late)  # that FIFREEZE completes after the timeout thaw
        dog.send("frozen 1")
        assert unwritable([late], LATE_GRACE + 1.0) == [], \
            "a late FIFREEZE the worker does not report thawed is thawed within the grace"
        assert dog.wait_line("end", 5) and dog.proc.wait(10) == 0, \
            f"with nothing in flight it leaves, though the worker lives: {dog.lines}"
        written = read_watchdog_report(str(report))
        assert written is not None and written["reason"] == "timeout", written
        assert written["thawed"] == [ours], "only the claimed, frozen mount was thawed"
    finally:
        dog.stop()
    assert thaw_if_frozen(theirs), "a mount frozen by someone else must never be thawed"


@pytest.mark.parametrize("how", ["worker death", "SIGTERM", "SIGUSR1", "SIGALRM", "bad line"])
def test_every_exit_thaws_what_was_claimed_and_nothing_else(loopfs, tmp_path, how):
    mounts = [loopfs("ext4").mountpoint, loopfs("xfs").mountpoint, loopfs("ext4").mountpoint]
    freeze(mounts[2])
    report = tmp_path / "watchdog.json"
    dog = Dog(mounts, 60, str(report))
    try:
        claim(dog, 0, mounts[0])
        claim(dog, 1, mounts[1])
        claim_busy(dog, 2, mounts[2])
        if how == "worker death":
            dog.worker_dies()
        elif how == "bad line":
            dog.send("freeze nine")
        else:
            dog.proc.send_signal(getattr(signal, how))
        assert unwritable(mounts[:2], 1.0) == [], f"{how}: the claimed mounts must be thawed"
        assert wait_for(report.exists, timeout=5), f"{how}: the watchdog records its thaw"
        written = read_watchdog_report(str(report))
        assert written is not None and sorted(written["thawed"]) == sorted(mounts[:2]), written
        expected = {"worker death": "died", "bad line": "watchdog error"}.get(
            how, f"signal {getattr(signal, how, 0)}")
        assert written["reason"].startswith(expected), written
        assert wait_for(lambda: dog.proc.poll() is not None, timeout=10), \
            f"{how}: the watchdog exits"
    finally:
        dog.stop()
    assert thaw_if_frozen(mounts[2]), "a mount frozen by someone else must never be thawed"


def test_watchdog_leaves_the_cgroups_it_was_started_in(loopfs):
    group = TestCgroup(f"freeze-dog-{uuid.uuid4().hex[:8]}")
    dog = None
    try:
        dog = Dog([loopfs("ext4").mountpoint], 60, cgroup=group)
        assert dog.proc.pid not in group.procs(), \
            "before `ready` the watchdog must leave the cgroup a whole-cgroup kill would hit"
        with open(f"/proc/{dog.proc.pid}/cgroup", encoding="ascii") as stream:
            where = [line.split(":", 2)[2] for line in stream.read().splitlines()]
        assert where and all(path == "/" for path in where), \
            f"the watchdog must sit in the root cgroup of every hierarchy: {where}"
    finally:
        if dog is not None:
            dog.stop()
        group.remove()


def test_after_an_error_of_its_own_it_thaws_a_late_freeze(loopfs, tmp_path):
    mounts = [loopfs("ext4").mountpoint, loopfs("xfs").mountpoint]
    dog = Dog(mounts, 60, str(tmp_path / "watchdog.json"))
    try:
        claim(dog, 0, mounts[0])
        dog.send("freeze 1")  # in flight
        dog.send("freeze nine")
        assert dog.wait_line("error", 5) and unwritable(mounts[:1], 1.0) == [], dog.lines
        freeze(mounts[1])  # the FIFREEZE in flight completes
        dog.send("frozen 1")
        assert unwritable(mounts[1:], LATE_GRACE + 1.0) == [], \
            "after an error it still thaws a late freeze"
        assert dog.proc.wait(10) == 0, "then, nothing in flight, it leaves"
    finally:
        dog.stop()


def test_a_claim_without_an_outcome_is_thawed_at_the_workers_death(loopfs, tmp_path):
    """The worker died between the FIFREEZE's return and its report: ours, or theirs? Thawing
    is the lesser harm (a filesystem of ours left frozen hangs the VM)."""
    mount = loopfs("ext4").mountpoint
    dog = Dog([mount], 60, str(tmp_path / "watchdog.json"))
    try:
        dog.send("freeze 0")
        freeze(mount)
        dog.worker_dies()
        assert unwritable([mount], 1.0) == [], "an unknown outcome at death is thawed"
        assert dog.proc.wait(10) == 0
    finally:
        dog.stop()


def test_a_lingering_watchdog_never_thaws_a_freeze_it_cannot_attribute(loopfs, tmp_path):
    """A worker stuck on slow storage keeps its watchdog lingering (a FIFREEZE in flight) while
    the next backup freezes the same filesystem: that freeze is not ours to thaw."""
    first, slow = loopfs("ext4").mountpoint, loopfs("ext4").mountpoint
    dog = Dog([first, slow], 1.0, str(tmp_path / "watchdog.json"))
    try:
        claim(dog, 0, first)
        dog.send("freeze 1")  # in flight: the watchdog lingers after its deadline
        assert unwritable([first], 2.0) == [], "thawed at the deadline"
        assert dog.wait_line("timeout", 5), f"the worker is told of the timeout: {dog.lines}"
        freeze(first)  # the next backup freezes the same filesystem; our worker still lives
        assert unwritable([first], 1.0) == [first], \
            "a lingering watchdog must not thaw a freeze its worker did not make"
        assert dog.proc.poll() is None, "it lingers while a FIFREEZE of its worker is in flight"
        dog.send("skip 1")
        assert dog.proc.wait(10) == 0, "the linger ends once no FIFREEZE is in flight"
    finally:
        dog.stop()
        assert thaw_if_frozen(first), "the next backup's freeze was thawed by our watchdog"
