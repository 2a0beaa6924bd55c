"""Hunt: someone else froze a mount (an admin's fsfreeze, another backup tool). Our FIFREEZE of
it fails with EBUSY and the claim is withdrawn (`skip`) only after the booking; a worker killed
between the ioctl and the booking leaves the claim standing, and the watchdog thaws the other
party's freeze when it sees the worker die."""
from __future__ import annotations

import pytest

from devtools.blkthrottle import freeze, thaw_if_frozen
from plumbing.crashpoints import ARM_VARIABLE
from snapshot.freeze import read_watchdog_report
from tests.snapshot.conftest import wait_for
from tests.snapshot.test_freeze_faults import start_worker

pytestmark = pytest.mark.root


def test_a_worker_killed_after_an_ebusy_never_thaws_someone_elses_freeze(
        loopfs, azurite, confdir, tmp_path, monkeypatch):
    theirs = loopfs("ext4").mountpoint
    freeze(theirs)
    monkeypatch.setenv(ARM_VARIABLE, "snapshot.freeze.after_ioctl")  # right after the EBUSY
    worker = start_worker(tmp_path, confdir, azurite, [theirs], 30.0, tmp_path / "dog.json")
    try:
        worker.communicate(timeout=60)
        assert worker.returncode == -9, "the worker died at the crash point"
        wait_for((tmp_path / "dog.json").exists, timeout=10)
        report = read_watchdog_report(str(tmp_path / "dog.json"))
        still_theirs = thaw_if_frozen(theirs)
        assert still_theirs, f"the other party's freeze was thawed by our watchdog: {report}"
    finally:
        worker.kill()
        worker.wait(30)
        thaw_if_frozen(theirs)
