"""Hunt: the agent re-runs enable (same sequence number, e.g. after its restart) while the worker
runs. Enable renders "transitioning" under the lock and uploads it outside; if its upload is
slower than the worker's terminal one, the stale transitioning document lands last and the
status blob (all the backup service reads) never becomes terminal."""
from __future__ import annotations

import json
import threading

import pytest

from tests.handler.test_snapshot_via_agent import snapshot_env
from tests.hunt.delayproxy import DelayProxy
from tests.snapshot.conftest import make_disks, settings_dicts, wait_for, write_vmbackup_conf

pytestmark = pytest.mark.root

SNAPSHOT_SECONDS = 6.0  # the disk snapshot request takes this long
SLOW_STATUS_SECONDS = 12.0  # the re-run enable's status upload takes this long


def test_a_reenable_never_leaves_the_status_blob_behind_the_worker(agent, ext_dir, azurite,
                                                                   confdir):
    write_vmbackup_conf(confdir, [], fsfreeze=False)
    agent.extra_env.update(snapshot_env(confdir))
    proxy = DelayProxy(azurite.port)
    slow_status = threading.Event()

    def rule(method: str, path: str, body: bytes) -> float:
        if "comp=snapshot" in path:
            return SNAPSHOT_SECONDS
        if method == "PUT" and "/racestatus/" in path and b'"transitioning"' in body \
                and slow_status.is_set():
            return SLOW_STATUS_SECONDS
        return 0.0

    proxy.rule = rule
    try:
        status_uri = proxy.route(azurite.blob_sas_uri("racestatus", "status.json"))
        disks = [proxy.route(uri) for uri in make_disks(azurite, 1)]
        agent.write_settings(ext_dir, 1, *settings_dicts(disks, status=status_uri))
        assert agent.run(ext_dir, "enable", 1).returncode == 0
        assert wait_for(lambda: any("hold=6" in line for line in proxy.log), timeout=30), \
            "the worker's snapshot request is under way"
        slow_status.set()  # from now on storage is slow to take a transitioning status
        assert agent.run(ext_dir, "enable", 1).returncode == 0  # the agent restarted
        local = agent.wait_terminal(ext_dir, 1, timeout=60)
        assert local["status"] == "success", local
        blob = json.loads(azurite.read_blob("racestatus", "status.json"))[0]["status"]
        assert blob["status"] == "success", \
            f"the status blob says {blob['status']} while the local status says success"
    finally:
        proxy.close()
