"""VMSnapshot driven the way the backup service does it: through the agent and the handler."""
# ruff: noqa: F811 - the snapshot fixtures are imported so pytest finds them here
from __future__ import annotations

import json
import os
import signal

import pytest

from devtools.fakeagent import FakeAgent
from tests.snapshot.conftest import (  # noqa: F401 - fixtures
    confdir,
    hanging_proxy,
    loopfs,
    make_disks,
    settings_dicts,
    wait_for,
    write_vmbackup_conf,
    writer_factory,
)

pytestmark = pytest.mark.root


def snapshot_env(confdir) -> dict:
    return {"VMSNAPSHOT_CONF": str(confdir / "vmbackup.conf"),
            "VMSNAPSHOT_PLUGIN_CONFIG": str(confdir / "no-plugin-config.json"),
            "VMSNAPSHOT_WORKLOAD_CONF": str(confdir / "no-workload.conf")}


def the_job(ext_dir) -> dict:
    (job_file,) = (ext_dir / "state" / "jobs").glob("*.json")
    return json.loads(job_file.read_text())


def test_snapshot_through_the_agent_is_file_system_consistent(agent: FakeAgent, ext_dir, azurite,
                                                              loopfs, confdir, writer_factory):
    mount = loopfs("ext4").mountpoint
    write_vmbackup_conf(confdir, [mount], timeout=30)
    writer = writer_factory(os.path.join(mount, "w.bin"))
    agent.extra_env.update(snapshot_env(confdir))
    uris = make_disks(azurite, 2)
    status_uri = azurite.blob_sas_uri("vmstatus", "status.json")
    public, protected = settings_dicts(uris, status=status_uri,
                                       logs=azurite.blob_sas_uri("vmlogs", "log.txt"))
    agent.write_settings(ext_dir, 1, public, protected, cipher="aes256")
    assert agent.run(ext_dir, "enable", 1).returncode == 0
    status = agent.wait_terminal(ext_dir, 1, timeout=120)
    assert status["status"] == "success", status
    assert status["taskId"] == public["taskId"] and len(status["snapshotInfo"]) == 2, \
        "the local status carries the backup service's fields too"
    assert isinstance(status["code"], int), "but keeps the agent's integer code"
    (sub,) = status["substatus"]
    assert json.loads(sub["formattedMessage"]["message"])["snapshotConsistency"] == 1, sub
    blob = json.loads(azurite.read_blob("vmstatus", "status.json"))[0]["status"]
    assert blob["taskId"] == public["taskId"] and blob["status"] == "success", blob
    assert blob["snapshotConsistency"] == "fileSystemConsistent", blob
    info = blob["snapshotInfo"]
    assert len(info) == 2 and all(d["isSuccessful"] for d in info), info
    assert all("snapshot=" in d["snapshotUri"] and "sig=" not in d["snapshotUri"] for d in info)
    assert "froze" in azurite.read_blob("vmlogs", "log.txt").decode(), "log blob holds the run"
    assert writer.count > 0, "the writer ran through the snapshot"

    jobs = sorted(p.name for p in (ext_dir / "state" / "jobs").glob("*.json"))
    assert agent.run(ext_dir, "enable", 1).returncode == 0  # agent restart: same sequence
    assert sorted(p.name for p in (ext_dir / "state" / "jobs").glob("*.json")) == jobs
    agent.write_settings(ext_dir, 2, public, protected)  # the same task again, new sequence
    agent.run(ext_dir, "enable", 2)
    again = agent.status(ext_dir, 2)
    assert again["code"] == 3 and "already processed" in again["formattedMessage"]["message"]


def test_handler_worker_killed_mid_freeze_thaws_and_next_enable_reports(
        agent: FakeAgent, ext_dir, azurite, loopfs, confdir, writer_factory, hanging_proxy):
    mount = loopfs("ext4").mountpoint
    write_vmbackup_conf(confdir, [mount], timeout=60, extra="SnapshotTimeout = 30\n")
    writer = writer_factory(os.path.join(mount, "w.bin"))
    agent.extra_env.update(snapshot_env(confdir))
    uris = [hanging_proxy.route(u) for u in make_disks(azurite, 1)]
    status_uri = azurite.blob_sas_uri("vmstatus", "killed.json")
    public, protected = settings_dicts(uris, status=status_uri)
    agent.write_settings(ext_dir, 1, public, protected)
    assert agent.run(ext_dir, "enable", 1).returncode == 0
    assert hanging_proxy.held.wait(30), "the snapshot should hang while the filesystem is frozen"
    count = writer.count
    os.kill(the_job(ext_dir)["pid"], signal.SIGKILL)
    assert wait_for(lambda: writer.count > count + 2, timeout=1.0), \
        "the filesystem must be writable again within 1 s of the worker's death"
    assert wait_for(lambda: (ext_dir / "state" / "snapshot").is_dir() and any(
        (ext_dir / "state" / "snapshot").glob("*.watchdog.json")), timeout=5)
    rerun = agent.run(ext_dir, "enable", 1)
    status = agent.status(ext_dir, 1)
    assert status["status"] == "error" and status["code"] == 121, status
    assert "died while filesystems were frozen" in status["formattedMessage"]["message"]
    assert rerun.returncode != 0
    blob = json.loads(azurite.read_blob("vmstatus", "killed.json"))[0]["status"]
    assert blob["status"] == "error" and blob["code"] == "121", blob
