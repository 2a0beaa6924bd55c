"""Hunt: the thaw deadline lives only in the watchdog. SIGSTOP it once the filesystem is frozen
and the worker keeps the freeze for as long as its disk snapshot request lasts: with storage
that trickles its answer, that is without end."""
from __future__ import annotations

import os
import signal
import time

import pytest

from devtools.blkthrottle import unwritable
from plumbing.crashpoints import TRACE_VARIABLE, read_trace
from plumbing.procid import argv
from tests.handler.test_snapshot_via_agent import snapshot_env
from tests.hunt.trickle import TrickleSnapshotProxy
from tests.snapshot.conftest import make_disks, settings_dicts, wait_for, write_vmbackup_conf

pytestmark = pytest.mark.root

FREEZE_TIMEOUT = 5.0
MARGIN = 2.0  # what the thaw may take beyond the freeze timeout on a loaded machine


def reached(trace, name: str):
    return [pid for pid, point in read_trace(str(trace)) if point == name]


def test_a_stopped_watchdog_does_not_keep_the_filesystem_frozen(agent, ext_dir, azurite, loopfs,
                                                                confdir, tmp_path):
    mount = loopfs("ext4").mountpoint
    write_vmbackup_conf(confdir, [mount], timeout=FREEZE_TIMEOUT, extra="SnapshotTimeout = 2\n")
    trace = tmp_path / "crash.trace"
    agent.extra_env.update(snapshot_env(confdir))
    agent.extra_env[TRACE_VARIABLE] = str(trace)
    proxy = TrickleSnapshotProxy(azurite.port, interval=0.5, limit=60)
    watchdog = 0
    try:
        public, protected = settings_dicts([proxy.route(make_disks(azurite, 1)[0])])
        agent.write_settings(ext_dir, 1, public, protected)
        assert agent.run(ext_dir, "enable", 1).returncode == 0
        assert wait_for(lambda: reached(trace, "snapshot.freeze.after_ioctl"), timeout=60), \
            "the worker should freeze the loop filesystem"
        frozen_at = time.monotonic()
        (watchdog,) = reached(trace, "snapshot.freeze.watchdog_started")
        assert "snapshot.watchdog" in argv(watchdog), argv(watchdog)
        os.kill(watchdog, signal.SIGSTOP)
        assert proxy.snapshot_started.wait(10), "the disk snapshot request is under way"
        time.sleep(max(0.0, frozen_at + FREEZE_TIMEOUT + MARGIN - time.monotonic()))
        still = unwritable([mount], 1.0)
        assert still == [], (f"{mount} is still frozen {FREEZE_TIMEOUT + MARGIN:.0f}s after the "
                             f"freeze (timeout {FREEZE_TIMEOUT:.0f}s): the worker has no "
                             "deadline of its own while its watchdog is stopped")
    finally:
        if watchdog:
            os.kill(watchdog, signal.SIGCONT)
        proxy.close()
        assert wait_for(lambda: not unwritable([mount], 0.5), timeout=30), "thawed at the end"
