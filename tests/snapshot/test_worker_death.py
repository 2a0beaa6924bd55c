"""A snapshot worker (`python -m snapshot run-for-test`) killed or stopped mid-freeze."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from snapshot.freeze import read_watchdog_report
from snapshot.result import watchdog_report_result
from tests.snapshot.conftest import make_disks, settings_dicts, wait_for, write_vmbackup_conf

pytestmark = pytest.mark.root
ROOT = Path(__file__).resolve().parents[2]


def start_worker(tmp_path, confdir, uris):
    public, protected = settings_dicts(uris)
    (tmp_path / "public.json").write_text(json.dumps(public))
    (tmp_path / "protected.json").write_text(json.dumps(protected))
    env = dict(os.environ, PYTHONPATH=str(ROOT),
               VMSNAPSHOT_CONF=str(confdir / "vmbackup.conf"),
               VMSNAPSHOT_PLUGIN_CONFIG=str(confdir / "none.json"),
               VMSNAPSHOT_WORKLOAD_CONF=str(confdir / "workload.conf"))
    worker = subprocess.Popen(
        [sys.executable, "-m", "snapshot", "run-for-test", "--public",
         str(tmp_path / "public.json"), "--protected", str(tmp_path / "protected.json"),
         "--attempts", "1"], env=env, cwd=str(ROOT), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE)
    lines = []
    frozen = threading.Event()

    def drain() -> None:
        for line in worker.stderr:
            lines.append(line.decode())
            if "froze" in lines[-1]:
                frozen.set()
    threading.Thread(target=drain, daemon=True).start()
    return worker, frozen, public, lines


@pytest.mark.parametrize("how", ["SIGKILL", "SIGSTOP"])
def test_worker_killed_or_stopped_mid_freeze_thaws(how, loopfs, azurite, confdir, tmp_path,
                                                   hanging_proxy, writer_factory):
    mounts = [loopfs("ext4").mountpoint, loopfs("xfs").mountpoint]
    report = tmp_path / "watchdog.json"
    timeout = 60 if how == "SIGKILL" else 2
    write_vmbackup_conf(confdir, mounts, timeout=timeout,
                        extra=f"WatchdogReport = {report}\nSnapshotTimeout = 30\n")
    writers = [writer_factory(os.path.join(m, "w.bin")) for m in mounts]
    uris = [hanging_proxy.route(u) for u in make_disks(azurite, 2)]
    worker, frozen, public, lines = start_worker(tmp_path, confdir, uris)
    try:
        assert frozen.wait(30), "the worker should freeze: " + "".join(lines)
        assert hanging_proxy.held.wait(10), "the snapshot should be hanging while frozen"
        counts = [w.count for w in writers]
        worker.send_signal(getattr(signal, how))
        # The bound the product promises: writable again within 1 s of the worker's death
        # (for SIGSTOP: within 1 s after the freeze timeout).
        bound = 1.0 if how == "SIGKILL" else timeout + 1.0
        for writer, count in zip(writers, counts):
            assert wait_for(lambda w=writer, c=count: w.count > c + 2, timeout=bound), \
                f"{how}: filesystems must be writable again"
        assert wait_for(report.exists, timeout=5), "the watchdog records the forced thaw"
        result = watchdog_report_result(read_watchdog_report(str(report)), public["taskId"])
        expected = 121 if how == "SIGKILL" else 122
        assert not result.ok and result.code == expected, result.message
        assert len(read_watchdog_report(str(report))["thawed"]) == 2, "both mounts thawed"
    finally:
        worker.kill()
        worker.wait(10)


def test_sigterm_mid_freeze_thaws_and_reports(loopfs, azurite, confdir, tmp_path,
                                                        hanging_proxy, writer_factory):
    mount = loopfs("ext4").mountpoint
    # The hanging request's thread outlives the report until its own 5 s timeout.
    write_vmbackup_conf(confdir, [mount], timeout=60, extra="SnapshotTimeout = 5\n")
    writer = writer_factory(os.path.join(mount, "w.bin"))
    uris = [hanging_proxy.route(u) for u in make_disks(azurite, 1)]
    worker, frozen, _public, lines = start_worker(tmp_path, confdir, uris)
    try:
        assert frozen.wait(30), "the worker should freeze: " + "".join(lines)
        assert hanging_proxy.held.wait(10), "the snapshot should be hanging while frozen"
        count = writer.count
        worker.send_signal(signal.SIGTERM)
        assert wait_for(lambda: writer.count > count + 2, timeout=1.0), \
            "SIGTERM: the worker itself thaws at once"
        out, _ = worker.communicate(timeout=60)
        status = json.loads(out)[0]["status"]
        assert status["status"] == "error" and "signal 15" in status["formattedMessage"][
            "message"], status
    finally:
        worker.kill()
        worker.wait(10)
