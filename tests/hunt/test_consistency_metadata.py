"""Hunt: the snapshot metadata's consistency is decided before the freeze. When the freeze fails
and the run falls back to a crash-consistent snapshot (single managed disk, allowed, retries
left), the snapshot still records "fileSystemConsistent", and the recovery point listing built
on it calls a crash-consistent point FileSystemConsistent. Likewise a post-script that fails after
the snapshot: the status says fileSystemConsistent, the listing applicationConsistent."""
from __future__ import annotations

import pytest

from devtools.blkthrottle import freeze, thaw_if_frozen
from snapshot.restore import list_recovery_points
from tests.handler.test_snapshot_via_agent import snapshot_env
from tests.snapshot.conftest import (
    account_sas_container_uri,
    make_disks,
    settings_dicts,
    write_plugin_config,
    write_script,
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


def test_a_failed_post_script_is_not_listed_as_application_consistent(agent, ext_dir, azurite,
                                                                      loopfs, confdir, tmp_path):
    """The metadata is written with the snapshot, before the post-scripts run: what they do
    afterwards must still reach the recovery point listing."""
    scripts = tmp_path / "scripts"
    scripts.mkdir(mode=0o700)
    pre = write_script(scripts / "pre.sh", "exit 0")
    post = write_script(scripts / "post.sh", "exit 3")
    write_plugin_config(confdir, preScriptLocation=str(pre), postScriptLocation=str(post),
                        continueBackupOnFailure=True)
    mount = loopfs("ext4").mountpoint
    write_vmbackup_conf(confdir, [mount], timeout=30)
    agent.extra_env.update(snapshot_env(confdir))
    agent.extra_env["VMSNAPSHOT_PLUGIN_CONFIG"] = str(confdir / "VMSnapshotScriptPluginConfig.json")
    (disk,) = make_disks(azurite, 1)
    container = disk.split("?")[0].rsplit("/", 2)[-2]
    agent.write_settings(ext_dir, 1, *settings_dicts([disk]))
    assert agent.run(ext_dir, "enable", 1).returncode == 0
    status = agent.wait_terminal(ext_dir, 1, timeout=120)
    assert status["status"] == "success" and \
        status["snapshotConsistency"] == "fileSystemConsistent", status
    (point,) = list_recovery_points(account_sas_container_uri(azurite, container))
    assert point.consistency.value == "fileSystemConsistent", \
        f"the status says fileSystemConsistent, the recovery point says {point.consistency.value}"
    assert len(point.disks) == 1, f"one disk snapshot in the recovery point: {point.disks}"
