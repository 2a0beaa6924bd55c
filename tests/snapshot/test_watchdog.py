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
    """What the worker does: claim first, then FIFREEZE."""
    dog.send(f"freeze {index}")
    freeze(mount)


def claim_busy(dog: Dog, index: int, mount: str) -> None:
    """A mount someone else froze: our FIFREEZE fails with EBUSY, so the claim is withdrawn."""
    dog.send(f"freeze {index}")
    with pytest.raises(OSError) as busy:
        freeze(mount)
    assert busy.value.errno == errno.EBUSY, "a second FIFREEZE must fail with EBUSY"
    dog.send(f"skip {index}")


@pytest.mark.parametrize("fstype", ["ext4", "xfs"])
def test_timeout_thaws_claims_and_keeps_thawing_a_late_freeze(loopfs, tmp_path, fstype):
    ours, theirs = loopfs(fstype).mountpoint, loopfs(fstype).mountpoint
    freeze(theirs)
    report = tmp_path / "watchdog.json"
    timeout = 1.0
    dog = Dog([ours, theirs], timeout, str(report))
    try:
        claim(dog, 0, ours)
        claim_busy(dog, 1, theirs)
        assert unwritable([ours], timeout + 1.0) == [], "thawed at the deadline"
        assert dog.wait_line("timeout", 5), f"the worker is told of the timeout: {dog.lines}"
        freeze(ours)  # a FIFREEZE that completes after the timeout thaw
        assert unwritable([ours], 1.0) == [], \
            "a late FIFREEZE must be thawed while the worker lives (the watchdog lingers)"
        assert dog.proc.poll() is None, "the watchdog lingers until the worker is gone"
        dog.worker_dies()
        assert dog.proc.wait(10) == 0, "the watchdog exits cleanly once the worker is gone"
        written = read_watchdog_report(str(report))
        assert written is not None and written["reason"] == "timeout", written
        assert written["thawed"] == [ours], "only the claimed mount was thawed"
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
        if how == "bad line":
            freeze(mounts[0])  # the worker may still complete a FIFREEZE
            assert unwritable(mounts[:1], 1.0) == [], "after an error it keeps thawing"
            dog.worker_dies()
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


def test_a_lingering_watchdog_never_thaws_a_freeze_it_cannot_attribute(loopfs, tmp_path):
    mount = loopfs("ext4").mountpoint
    dog = Dog([mount], 1.0, str(tmp_path / "watchdog.json"))
    try:
        claim(dog, 0, mount)
        assert unwritable([mount], 2.0) == [], "thawed at the deadline"
        assert dog.wait_line("timeout", 5), f"the worker is told of the timeout: {dog.lines}"
        freeze(mount)  # the next backup freezes the same filesystem; our worker still lives
        assert unwritable([mount], 1.0) == [mount], \
            "a lingering watchdog must not thaw a freeze its worker did not make"
    finally:
        dog.stop()
        assert thaw_if_frozen(mount), "the next backup's freeze was thawed by our watchdog"
