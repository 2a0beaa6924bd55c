"""The handler's promises under faults nobody scripted: a kill between two writes, storage
that hangs, several processes at once. Driven through the packaged handler and the fake agent."""
# ruff: noqa: F811 - the snapshot fixtures are imported so pytest finds them here
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from devtools.fakeagent import FakeAgent
from devtools.stallproxy import StallProxy
from handler.state import JobRecord, OperationRecord, StateStore
from tests.handler.test_capture_via_agent import capture, lab, wait_for_state  # noqa: F401
from tests.handler.test_lifecycle import check_settings, listener  # noqa: F401
from tests.handler.test_snapshot_via_agent import snapshot_env
from tests.snapshot.conftest import (  # noqa: F401 - fixtures
    confdir,
    loopfs,
    make_disks,
    settings_dicts,
    write_vmbackup_conf,
)

pytestmark = pytest.mark.root

LIFECYCLE_BOUND = 60.0  # every lifecycle command, whatever the storage does


def state_store(ext_dir: Path) -> StateStore:
    return StateStore(ext_dir / "state", ext_dir / "mrseq")


@pytest.fixture
def capture_agent(agent: FakeAgent, lab, tmp_path) -> FakeAgent:
    root = tmp_path / "captures"
    root.mkdir()
    agent.extra_env.update(PACKET_CAPTURE_ROOT=str(root), PACKET_CAPTURE_NETNS=lab[0].name)
    return agent


@pytest.fixture
def stall_proxy(azurite):
    with StallProxy("127.0.0.1", azurite.port) as proxy:
        yield proxy


def test_a_job_left_starting_by_a_killed_enable_is_not_running(capture_agent, ext_dir):
    """An enable killed after writing a job record and before its worker started leaves a
    record with no process: a later stop must neither call it running nor signal pid 0."""
    agent = capture_agent
    agent.write_settings(ext_dir, 1, capture("c1", timeLimitInSeconds=60))
    store = state_store(ext_dir)
    with store.lock():
        store.save_job(JobRecord("capture-1-c1", "packetCapture", 1, "c1"))
        store.save_operation(OperationRecord(1, "packetCapture", "transitioning", 0,
                                             "capture 'c1' starting", jobs=["capture-1-c1"]))
    agent.write_settings(ext_dir, 2, capture("c1", action="stop"))
    stop = agent.run(ext_dir, "enable", 2, timeout=LIFECYCLE_BOUND)
    assert stop.returncode in (0, 1) and not stop.killed, \
        f"stop must end on its own (never kill its own process group): {stop}"
    status = agent.wait_terminal(ext_dir, 2, timeout=20)
    assert status["status"] == "error" and status["code"] == 150, \
        f"a capture whose worker never started is not running: {status}"
    job = store.job("capture-1-c1")
    assert job is not None and job.finished, f"the orphaned record must be settled: {job}"
    disable = agent.run(ext_dir, "disable", 2, timeout=LIFECYCLE_BOUND)
    assert disable.returncode == 0, disable


def test_a_snapshot_task_claimed_by_a_killed_enable_is_still_taken(agent, ext_dir, azurite,
                                                                   loopfs, confdir):
    """Enable claimed the taskId, then was killed before any worker existed; the agent's
    re-run must take the snapshot, never report 'already processed' without one."""
    from snapshot.tasks import TaskRegistry

    mount = loopfs("ext4").mountpoint
    write_vmbackup_conf(confdir, [mount], timeout=30)
    agent.extra_env.update(snapshot_env(confdir))
    (disk,) = make_disks(azurite, 1)
    public, protected = settings_dicts([disk], status=azurite.blob_sas_uri("gstatus", "s.json"))
    agent.write_settings(ext_dir, 1, public, protected)
    store = state_store(ext_dir)
    with store.lock():  # what the killed enable had written
        store.save_operation(OperationRecord(1, "snapshot", "transitioning", 0,
                                             "snapshot: starting"))
        TaskRegistry(str(ext_dir / "state" / "snapshot")).claim(public["taskId"])
    assert agent.run(ext_dir, "enable", 1).returncode == 0
    status = agent.wait_terminal(ext_dir, 1, timeout=120)
    assert status["status"] == "success" and status["code"] == 1, \
        f"the re-run must take the snapshot: {status}"
    container, blob = disk.split("?")[0].rsplit("/", 2)[-2:]
    snapshots = [b for b in azurite.service().get_container_client(container)
                 .list_blobs(include=["snapshots"]) if b.snapshot]
    assert len(snapshots) == 1, f"one snapshot of the disk expected, found {len(snapshots)}"


def test_enable_ends_in_time_with_code_41_when_status_storage_hangs(agent, ext_dir, azurite,
                                                                   stall_proxy, listener):
    stall_proxy.stall()
    uris = {"statusBlobUri": stall_proxy.rewrite(azurite.blob_sas_uri("gstatus", "hang.status")),
            "logsBlobUri": stall_proxy.rewrite(azurite.blob_sas_uri("glogs", "hang.log"))}
    agent.write_settings(ext_dir, 1, check_settings(listener), uris)
    enable = agent.run(ext_dir, "enable", 1, timeout=2 * LIFECYCLE_BOUND)
    assert not enable.killed and enable.duration < LIFECYCLE_BOUND, \
        f"enable took {enable.duration:.0f}s against a hanging status blob"
    status = agent.status(ext_dir, 1)
    assert status is not None and status["status"] == "error" and status["code"] == 41, status
    assert "sig=" not in json.dumps(status), "no SAS signature in the status"


def test_a_capture_keeps_its_time_limit_and_stop_when_status_storage_hangs(
        capture_agent, ext_dir, azurite, stall_proxy, tmp_path):
    agent = capture_agent
    status_uri = stall_proxy.rewrite(azurite.blob_sas_uri("gstatus", "cap.status"))
    local = str(tmp_path / "captures" / "limited.cap")
    agent.write_settings(ext_dir, 1, capture("limited", timeLimitInSeconds=4, interfaces=["cap0"],
                                             storageLocation={"filePath": local}),
                         {"statusBlobUri": status_uri})
    assert agent.run(ext_dir, "enable", 1).returncode == 0
    wait_for_state(agent, ext_dir, 1, "limited", "Running")
    stall_proxy.stall()
    stopped = wait_for_state(agent, ext_dir, 1, "limited", "Stopped", timeout=30)
    assert stopped["stopReason"] == "TimeExceeded", stopped

    local = str(tmp_path / "captures" / "open.cap")
    stall_proxy.resume()
    agent.write_settings(ext_dir, 2, capture("open", timeLimitInSeconds=300, interfaces=["cap0"],
                                             storageLocation={"filePath": local}),
                         {"statusBlobUri": status_uri})
    assert agent.run(ext_dir, "enable", 2).returncode == 0
    wait_for_state(agent, ext_dir, 2, "open", "Running")
    stall_proxy.stall()
    agent.write_settings(ext_dir, 3, capture("open", action="stop"),
                         {"statusBlobUri": status_uri})
    started = time.monotonic()
    stop = agent.run(ext_dir, "enable", 3, timeout=2 * LIFECYCLE_BOUND)
    assert not stop.killed and stop.duration < LIFECYCLE_BOUND, \
        f"stop took {stop.duration:.0f}s with the status storage hanging"
    stopped = wait_for_state(agent, ext_dir, 3, "open", "Stopped",
                             timeout=max(1.0, 30 - (time.monotonic() - started)))
    assert stopped["stopReason"] == "StoppedByRequest", stopped
    # disable with storage that does not answer: tests/hunt/test_trickle.py (the same bound)


def test_a_failed_snapshot_task_sent_again_reports_its_failure_not_already_processed(
        agent, ext_dir, azurite, confdir):
    write_vmbackup_conf(confdir, [], timeout=30, fsfreeze=False)
    agent.extra_env.update(snapshot_env(confdir))
    missing = azurite.blob_sas_uri("nosuchdisks", "disk0.vhd")
    public, protected = settings_dicts([missing])
    agent.write_settings(ext_dir, 1, public, protected)
    agent.run(ext_dir, "enable", 1)
    first = agent.wait_terminal(ext_dir, 1, timeout=60)
    assert first["status"] == "error", first
    agent.write_settings(ext_dir, 2, public, protected)  # the same task, sent again
    agent.run(ext_dir, "enable", 2)
    again = agent.wait_terminal(ext_dir, 2, timeout=60)
    assert again["status"] == "error" and again["code"] == first["code"], \
        f"the task's failure is reported again, never success code 3: {again}"
    assert "already ran" in again["formattedMessage"]["message"], again


def test_a_capture_echoes_its_target_and_refuses_a_non_string_sas_token(capture_agent, ext_dir,
                                                                       tmp_path):
    agent = capture_agent
    target = "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm"
    local = str(tmp_path / "captures" / "t.cap")
    agent.write_settings(ext_dir, 1, capture("t", target=target, timeLimitInSeconds=1,
                                             interfaces=["cap0"],
                                             storageLocation={"filePath": local}))
    assert agent.run(ext_dir, "enable", 1).returncode == 0
    stopped = wait_for_state(agent, ext_dir, 1, "t", "Stopped")
    assert stopped.get("target") == target, f"target is echoed in the status: {stopped}"

    agent.write_settings(ext_dir, 2, capture("u", storageLocation={
        "storagePath": "https://acct.blob.core.windows.net/c/u.cap"}),
        {"storageSasToken": 4242424242})
    enable = agent.run(ext_dir, "enable", 2)
    status = agent.status(ext_dir, 2)
    assert enable.returncode != 0 and status["code"] == 107, status
    message = status["formattedMessage"]["message"]
    assert "protectedSettings.storageSasToken" in message and "4242424242" not in message, message
