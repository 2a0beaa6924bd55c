"""Hunt: storage that trickles an answer a byte at a time. Every deadline in the handler is
checked only before an attempt and passed to the SDK as a per-read socket timeout, so an
answer that never stops arriving holds enable, disable and the worker for as long as it lasts."""
from __future__ import annotations

import json
import uuid

import pytest

from handler.state import StateStore
from tests.handler.test_snapshot_via_agent import snapshot_env
from tests.hunt.trickle import TrickleServer
from tests.snapshot.conftest import settings_dicts, write_vmbackup_conf

pytestmark = pytest.mark.root

LIFECYCLE_BOUND = 60.0  # the promise: every lifecycle command ends within a minute
WORKER_BOUND = 30.0  # 4 attempts of 2 s and their backoff, with room for a loaded machine
AGENT_PATIENCE = 65.0  # this test's stand-in for the agent's 300 s kill, to fail sooner


@pytest.fixture
def trickle():
    with TrickleServer(interval=0.5, limit=240) as server:
        yield server


def install_settings(trickle: TrickleServer):
    public = {"taskId": str(uuid.uuid4()) + "_1", "commandToExecute": "install"}
    return public, {"statusBlobUri": trickle.uri("status", "s.json")}


def test_enable_ends_within_a_minute_when_the_status_blob_trickles(agent, ext_dir, trickle):
    agent.write_settings(ext_dir, 1, *install_settings(trickle))
    enable = agent.run(ext_dir, "enable", 1, timeout=AGENT_PATIENCE)
    assert trickle.requests, "the status blob was tried"
    assert not enable.killed and enable.duration < LIFECYCLE_BOUND, \
        f"enable ran {enable.duration:.0f}s (killed: {enable.killed}) against trickling storage"


def test_disable_ends_within_a_minute_when_the_status_blob_trickles(agent, ext_dir, trickle):
    trickle.trickling = False
    agent.write_settings(ext_dir, 1, *install_settings(trickle))
    enable = agent.run(ext_dir, "enable", 1, timeout=AGENT_PATIENCE)
    assert enable.returncode == 0 and agent.status(ext_dir, 1)["status"] == "success", enable
    trickle.trickling = True
    disable = agent.run(ext_dir, "disable", 1, timeout=AGENT_PATIENCE)
    assert not disable.killed and disable.duration < LIFECYCLE_BOUND, \
        f"disable ran {disable.duration:.0f}s (killed: {disable.killed}) against trickling storage"


def test_a_snapshot_worker_ends_when_a_disk_blob_trickles(agent, ext_dir, trickle, confdir):
    """Per blob request 2 s (SnapshotTimeout), 4 attempts: the worker has a terminal status
    within 30 s. The disk's storage trickles its answer to the preflight."""
    write_vmbackup_conf(confdir, [], fsfreeze=False, extra="SnapshotTimeout = 2\n")
    agent.extra_env.update(snapshot_env(confdir))
    public, protected = settings_dicts([trickle.uri("vhds", "disk0.vhd")])
    agent.write_settings(ext_dir, 1, public, protected)
    assert agent.run(ext_dir, "enable", 1).returncode == 0
    try:
        status = agent.wait_terminal(ext_dir, 1, timeout=WORKER_BOUND)
    except AssertionError as exc:
        jobs = StateStore(ext_dir / "state", ext_dir / "mrseq").jobs()
        pytest.fail(f"no terminal status after {WORKER_BOUND:.0f}s ({exc}); job records: "
                    f"{json.dumps([(j.job_id, j.state) for j in jobs])}")
    assert status["code"] == 76, status  # no answer in time: retryable, no network
