"""Hunt2: someone else froze a mount. A worker killed between its claim (`freeze I`) and its
FIFREEZE never issued the ioctl; the watchdog, seeing EOF with the claim unknown, thaws the
other party's freeze (the gap the `after_ioctl` test does not cover)."""
from __future__ import annotations

import pytest

from devtools.blkthrottle import freeze, thaw_if_frozen
from plumbing.crashpoints import ARM_VARIABLE
from snapshot.freeze import read_watchdog_report
from tests.snapshot.conftest import wait_for
from tests.snapshot.test_freeze_faults import start_worker

pytestmark = pytest.mark.root


@pytest.mark.xfail(strict=True, reason=(
    "the deliberate trade-off (docs/vmsnapshot.md): a claim whose FIFREEZE outcome is "
    "unknown is thawed, since a filesystem of ours left frozen hangs the VM; closing it needs "
    "the watchdog to issue the FIFREEZEs itself"))
def test_a_worker_killed_before_its_fifreeze_never_thaws_someone_elses_freeze(
        loopfs, azurite, confdir, tmp_path, monkeypatch):
    theirs = loopfs("ext4").mountpoint
    freeze(theirs)
    monkeypatch.setenv(ARM_VARIABLE, "snapshot.freeze.before_ioctl")  # claimed, no ioctl yet
    worker = start_worker(tmp_path, confdir, azurite, [theirs], 30.0, tmp_path / "dog.json")
    try:
        worker.communicate(timeout=50)
        assert worker.returncode == -9, "the worker died at the crash point"
        wait_for((tmp_path / "dog.json").exists, timeout=5)
        report = read_watchdog_report(str(tmp_path / "dog.json"))
        still_theirs = thaw_if_frozen(theirs)
        assert still_theirs, f"the other party's freeze was thawed by our watchdog: {report}"
    finally:
        worker.kill()
        worker.wait(30)
        thaw_if_frozen(theirs)
