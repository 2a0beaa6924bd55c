"""Hunt: SIGTERM to the worker (a disable racing the end of the run, a stray signal) after the
snapshot was taken, while the worker records and reports it. The worker's SIGTERM handler raises
OperationStopped wherever the main thread is: inside `work()` it throws the taken snapshot away,
after it (waiting for the state lock, writing the status) it escapes the worker and becomes
code 1 through main._fail. A snapshot taken must be reported as taken."""
from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from handler.state import StateStore
from plumbing.procid import ProcessId, is_running
from tests.handler.test_snapshot_via_agent import snapshot_env, the_job
from tests.hunt.delayproxy import DelayProxy
from tests.snapshot.conftest import make_disks, settings_dicts, wait_for, write_vmbackup_conf

pytestmark = pytest.mark.root

SNAPSHOT_SECONDS = 3.0  # long enough to take the state lock before the run ends


def said(log_folder: Path, words: str) -> bool:
    return any(words in path.read_text() for path in log_folder.glob("jobs/*.log"))


def test_a_sigterm_after_the_snapshot_still_reports_it(agent, ext_dir, azurite, confdir):
    write_vmbackup_conf(confdir, [], fsfreeze=False)
    agent.extra_env.update(snapshot_env(confdir))
    proxy = DelayProxy(azurite.port)
    proxy.rule = lambda method, path, body: SNAPSHOT_SECONDS if "comp=snapshot" in path else 0.0
    store = StateStore(ext_dir / "state", ext_dir / "mrseq")
    logs = agent.log_root / agent.handler_name
    try:
        (disk,) = make_disks(azurite, 1)
        agent.write_settings(ext_dir, 1, *settings_dicts([proxy.route(disk)]))
        assert agent.run(ext_dir, "enable", 1).returncode == 0
        assert wait_for(lambda: any("hold=3" in line for line in proxy.log), timeout=60), \
            "the disk snapshot is under way"
        job = the_job(ext_dir)
        worker = ProcessId(job["pid"], job["start_ticks"])
        with store.lock():  # the worker records its result under this lock: it waits here
            assert wait_for(lambda: said(logs, "result success"), timeout=30), \
                "the snapshot was taken"
            os.kill(worker.pid, signal.SIGTERM)
        assert wait_for(lambda: not is_running(worker), timeout=60), "the worker ends"
    finally:
        proxy.close()
    local = agent.status(ext_dir, 1)
    assert local is not None and local["status"] == "success" and local["code"] == 1, \
        f"the snapshot was taken, the status must say so: {local}"
