"""Hunt: an enable killed right after it started its worker (before it recorded the job on its
operation) leaves a worker the taskId dedupe does not see: the same task sent again under a
new sequence number starts a second worker, and the disks are snapshotted twice."""
from __future__ import annotations

import pytest

from plumbing.crashpoints import ARM_VARIABLE
from tests.handler.test_snapshot_via_agent import snapshot_env
from tests.hunt.test_settings_replaced import snapshots_of
from tests.snapshot.conftest import make_disks, settings_dicts, wait_for, write_vmbackup_conf

pytestmark = pytest.mark.root


def test_one_task_is_snapshotted_once_after_a_killed_enable(agent, ext_dir, azurite, confdir):
    write_vmbackup_conf(confdir, [], fsfreeze=False)
    agent.extra_env.update(snapshot_env(confdir))
    (disk,) = make_disks(azurite, 1)
    public, protected = settings_dicts([disk])
    agent.write_settings(ext_dir, 1, public, protected)
    killed = agent.run(ext_dir, "enable", 1, env={ARM_VARIABLE: "handler.job.spawned"})
    assert killed.returncode in (-9, 137), f"enable dies right after starting its worker: {killed}"
    agent.write_settings(ext_dir, 2, public, protected)  # the same task, new sequence number
    agent.run(ext_dir, "enable", 2)
    status = agent.wait_terminal(ext_dir, 2, timeout=60)
    assert wait_for(lambda: len(snapshots_of(azurite, disk)) >= 1, timeout=30), status
    wait_for(lambda: len(snapshots_of(azurite, disk)) > 1, timeout=10)  # a second one, if any
    count = len(snapshots_of(azurite, disk))
    assert count == 1, f"task {public['taskId']} was snapshotted {count} times ({status['code']})"
