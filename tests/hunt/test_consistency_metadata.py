"""Hunt: the snapshot metadata's consistency is decided before the freeze. When the freeze fails
and the run falls back to a crash-consistent snapshot (single managed disk, allowed, retries
left), the snapshot still records "fileSystemConsistent", and the recovery point listing built
on it calls a crash-consistent point FileSystemConsistent."""
from __future__ import annotations

import pytest

from devtools.blkthrottle import freeze, thaw_if_frozen
from snapshot.restore import list_recovery_points
from tests.handler.test_snapshot_via_agent import snapshot_env
from tests.snapshot.conftest import (
    account_sas_container_uri,
    make_disks,
    settings_dicts,
    write_vmbackup_conf,
)

pytestmark = pytest.mark.root

CRASH_ALLOWED = {"isManagedVm": True, "canTakeCrashConsistentSnapshot": True,
                 "backupRetryCount": 1}


def test_a_crash_consistent_fallback_is_recorded_as_crash_consistent(agent, ext_dir, azurite,
                                                                      loopfs, confdir):
    mount = loopfs("ext4").mountpoint
    write_vmbackup_conf(confdir, [mount], timeout=30)
    agent.extra_env.update(snapshot_env(confdir))
    (disk,) = make_disks(azurite, 1)
    container = disk.split("?")[0].rsplit("/", 2)[-2]
    public, protected = settings_dicts([disk], custom=CRASH_ALLOWED)
    agent.write_settings(ext_dir, 1, public, protected)
    freeze(mount)  # someone else's freeze: ours fails (EBUSY)
    try:
        assert agent.run(ext_dir, "enable", 1).returncode == 0
        status = agent.wait_terminal(ext_dir, 1, timeout=120)
    finally:
        thaw_if_frozen(mount)
    assert status["status"] == "success" and status["snapshotConsistency"] == "crashConsistent", \
        status
    (point,) = list_recovery_points(account_sas_container_uri(azurite, container))
    assert point.consistency.value == "crashConsistent", \
        f"the status says crashConsistent, the recovery point says {point.consistency.value}"
