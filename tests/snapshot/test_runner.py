"""Whole snapshot runs on loop filesystems and Azurite page blobs: consistency, scripts, thaw."""
from __future__ import annotations

import fcntl
import json
import os
import threading
from datetime import datetime, timezone
from urllib.parse import parse_qs, urlsplit

import pytest

from plumbing.blobstore import BlobStore
from plumbing.retry import NO_RETRY
from snapshot.config import load_local_config
from snapshot.log import BufferedLog
from snapshot.result import Consistency, transitioning_status_document
from snapshot.runner import run_snapshot
from snapshot.settings import parse_snapshot_settings
from snapshot.watchdog import FIFREEZE, FITHAW
from tests.snapshot.conftest import (
    make_disks,
    settings_dicts,
    wait_for,
    write_plugin_config,
    write_script,
    write_vmbackup_conf,
)

pytestmark = pytest.mark.root


def do_run(confdir, uris, *, store=None, custom=None, plugin=True, objects=None):
    env = {"VMSNAPSHOT_CONF": str(confdir / "vmbackup.conf"),
           "VMSNAPSHOT_PLUGIN_CONFIG": str(confdir / "VMSnapshotScriptPluginConfig.json"),
           "VMSNAPSHOT_WORKLOAD_CONF": str(confdir / "workload.conf")}
    public, protected = settings_dicts(uris, custom=custom, objects=objects)
    settings = parse_snapshot_settings(public, protected, now=datetime.now(timezone.utc))
    log = BufferedLog()
    store = store or BlobStore(policy=NO_RETRY, timeout=10)
    result = run_snapshot(settings, blob_store=store, config=load_local_config(env), log=log)
    return result, log


def scripts(confdir, tmp_path, pre_body="exit 0", post_body="exit 0", **plugin):
    runs = tmp_path / "runs"
    pre = write_script(tmp_path / "pre.sh", f'echo pre >> {runs}\n{pre_body}')
    post = write_script(tmp_path / "post.sh", f'echo post >> {runs}\n{post_body}')
    write_plugin_config(confdir, preScriptLocation=str(pre), postScriptLocation=str(post),
                        **plugin)
    return runs


def run_counts(runs) -> dict:
    lines = runs.read_text().split() if runs.exists() else []
    return {"pre": lines.count("pre"), "post": lines.count("post")}


def test_app_consistent_run_snapshots_every_disk(loopfs, azurite, confdir, tmp_path,
                                                 writer_factory):
    mounts = [loopfs("ext4").mountpoint, loopfs("xfs").mountpoint]
    writer = writer_factory(os.path.join(mounts[0], "w.bin"))
    write_vmbackup_conf(confdir, mounts)
    runs = scripts(confdir, tmp_path)
    uris = make_disks(azurite, 2)
    result, log = do_run(confdir, uris)
    assert result.ok and result.consistency is Consistency.APPLICATION, result.message
    assert result.code == 0 and result.consistency_number == 2, "app-consistent is code 0, value 2"
    assert run_counts(runs) == {"pre": 1, "post": 1}, "each script runs exactly once"
    assert result.freeze_window is not None and writer.count > 0, "the freeze happened"
    doc = result.status_blob_document(datetime.now(timezone.utc))
    status = doc[0]["status"]
    message = json.loads(status["formattedMessage"]["message"])
    assert message["snapshotConsistency"] == 2 and status["code"] == "0", status
    assert status["snapshotConsistency"] == "applicationConsistent", status
    assert len(status["snapshotInfo"]) == 2 and all(i["isSuccessful"]
                                                     for i in status["snapshotInfo"]), status
    for uri, info in zip(uris, status["snapshotInfo"]):
        blob = urlsplit(uri).path.split("/")[-1]
        container = urlsplit(uri).path.split("/")[-2]
        snap_time = parse_qs(urlsplit(info["snapshotUri"]).query)["snapshot"][0]
        client = azurite.service().get_blob_client(container, blob, snapshot=snap_time)
        meta = {k.lower(): v for k, v in client.get_blob_properties().metadata.items()}
        assert meta.get("backupjob") == "job-1", f"backupMetadata must be on the snapshot: {meta}"
    text = log.text() + json.dumps(doc)
    for uri in uris:
        signature = parse_qs(urlsplit(uri).query)["sig"][0]
        assert signature not in text, "a SAS signature leaked into the log or status"


@pytest.mark.parametrize("row", ["no-scripts", "pre-fails-continue", "pre-fails-stop",
                                 "no-freeze", "disk-fails", "freeze-fails-multi",
                                 "freeze-fails-single-crash-allowed",
                                 "freeze-fails-single-no-retries-left"])
def test_consistency_table(row, loopfs, azurite, confdir, tmp_path):
    mount = loopfs("ext4").mountpoint
    write_vmbackup_conf(confdir, [mount], fsfreeze=row != "no-freeze")
    runs = None
    if row.startswith("pre-fails"):
        runs = scripts(confdir, tmp_path, pre_body="exit 3",
                       continueBackupOnFailure=row.endswith("continue"))
    uris = make_disks(azurite, 1 if "single" in row else 2)
    custom = {"isManagedVm": True, "canTakeCrashConsistentSnapshot": True,
              "backupRetryCount": 0 if row.endswith("no-retries-left") else 2}
    if row == "disk-fails":
        blob = urlsplit(uris[1]).path.split("/")
        uris[1] = azurite.blob_sas_uri(blob[-2], blob[-1], permission="r")
    held = None
    if row.startswith("freeze-fails"):
        held = os.open(mount, os.O_RDONLY)
        fcntl.ioctl(held, FIFREEZE, 0)  # someone else froze it: our FIFREEZE gets EBUSY
    try:
        result, _log = do_run(confdir, uris, custom=custom)
    finally:
        if held is not None:
            fcntl.ioctl(held, FITHAW, 0)
            os.close(held)
    expected = {"no-scripts": ("success", 1, Consistency.FILE_SYSTEM),
                "pre-fails-continue": ("success", 1, Consistency.FILE_SYSTEM),
                "pre-fails-stop": ("error", 300, Consistency.NONE),
                "no-freeze": ("success", 1, Consistency.CRASH),
                "disk-fails": ("error", 15, Consistency.NONE),  # HTTP 403 from storage
                "freeze-fails-multi": ("error", 121, Consistency.NONE),
                "freeze-fails-single-crash-allowed": ("success", 1, Consistency.CRASH),
                "freeze-fails-single-no-retries-left": ("error", 121, Consistency.NONE)}[row]
    assert (result.status, result.code, result.consistency) == expected, result.message
    if runs is not None:
        assert run_counts(runs)["post"] == 1, "post-scripts run whenever pre-scripts ran"


def test_hung_pre_script_is_killed_and_retries_rerun(loopfs, azurite, confdir, tmp_path):
    mount = loopfs("ext4").mountpoint
    write_vmbackup_conf(confdir, [mount])
    runs = scripts(confdir, tmp_path, pre_body="echo failing; exit 5", preScriptNoOfRetries=2,
                   timeoutInSeconds=20)
    result, log = do_run(confdir, make_disks(azurite, 1))
    assert run_counts(runs) == {"pre": 3, "post": 1}, "two retries mean three real runs"
    assert result.consistency is Consistency.FILE_SYSTEM, "continueBackupOnFailure keeps going"
    assert "attempt 3/3" in log.text() and "failing" in log.text(), "attempts and output logged"
    child_pid = tmp_path / "child.pid"
    hung = write_script(tmp_path / "hung.sh",
                        f"echo pre >> {runs}\nsleep 300 &\necho $! > {child_pid}\nsleep 300")
    write_plugin_config(confdir, preScriptLocation=str(hung), timeoutInSeconds=1,
                        preScriptNoOfRetries=3, continueBackupOnFailure=False)
    result, _ = do_run(confdir, make_disks(azurite, 1))
    assert result.code == 308 and result.status == "error", result.message
    assert run_counts(runs)["pre"] == 4, "the hung script ran once (its timeout covers retries)"
    pid = int(child_pid.read_text())
    assert wait_for(lambda: not os.path.exists(f"/proc/{pid}")
                    or open(f"/proc/{pid}/stat").read().split()[2] == "Z", timeout=5), \
        "the script's whole process group, its background child too, is killed"


@pytest.mark.parametrize(("post_body", "timeout", "code"), [("exit 4", 10, 301),
                                                           ("sleep 30", 1, 309)])
def test_post_script_failure_and_timeout_codes(post_body, timeout, code, loopfs, azurite,
                                               confdir, tmp_path):
    write_vmbackup_conf(confdir, [loopfs("ext4").mountpoint])
    runs = scripts(confdir, tmp_path, post_body=post_body, timeoutInSeconds=timeout,
                   continueBackupOnFailure=False)
    result, _ = do_run(confdir, make_disks(azurite, 1))
    assert (result.status, result.code) == ("error", code), result.message
    assert run_counts(runs) == {"pre": 1, "post": 1}, "each script ran once"


def test_post_script_runs_after_failed_snapshot(loopfs, azurite, confdir, tmp_path):
    mount = loopfs("ext4").mountpoint
    write_vmbackup_conf(confdir, [mount])
    runs = scripts(confdir, tmp_path)
    uri = make_disks(azurite, 1)[0]
    blob = urlsplit(uri).path.split("/")
    read_only = azurite.blob_sas_uri(blob[-2], blob[-1], permission="r")
    result, _ = do_run(confdir, [read_only])
    assert result.status == "error" and not result.disks[0].is_successful, result.message
    assert run_counts(runs) == {"pre": 1, "post": 1}, "post-script must run after a failure"


def test_hanging_snapshot_is_thawed_at_the_freeze_timeout(loopfs, azurite, confdir,
                                                          hanging_proxy, writer_factory):
    mount = loopfs("ext4").mountpoint
    write_vmbackup_conf(confdir, [mount], timeout=1)
    writer = writer_factory(os.path.join(mount, "w.bin"))
    uris = [hanging_proxy.route(u) for u in make_disks(azurite, 2)]
    outcome = {}
    worker = threading.Thread(target=lambda: outcome.update(
        zip(("result", "log"), do_run(confdir, uris, store=BlobStore(policy=NO_RETRY,
                                                                      timeout=8)))))
    worker.start()
    assert hanging_proxy.held.wait(20), "the snapshot request should reach the proxy"
    count = writer.count
    assert wait_for(lambda: writer.count > count + 5, timeout=10), \
        "the watchdog must thaw at the timeout while the snapshot still hangs"
    assert worker.is_alive(), "the snapshot request is still hanging when the thaw happens"
    worker.join(60)
    assert outcome["result"].code == 122 and not outcome["result"].ok, outcome["result"].message


def test_transitioning_document_has_spec_fields():
    doc = transitioning_status_document("task_1", "6.36458E+17", datetime.now(timezone.utc))
    status = doc[0]["status"]
    assert status["status"] == "transitioning" and status["code"] == "4", status
    assert json.loads(status["formattedMessage"]["message"])["snapshotConsistency"] == 0


@pytest.mark.parametrize(("status", "error_code", "expected"),
                         [(409, "SnapshotCountExceeded", 85), (503, "ServerBusy", 173)])
def test_storage_answers_map_to_their_codes(status, error_code, expected, loopfs, azurite,
                                            confdir, hanging_proxy):
    write_vmbackup_conf(confdir, [loopfs("ext4").mountpoint])
    hanging_proxy.answer = (status, error_code)
    uris = [hanging_proxy.route(u) for u in make_disks(azurite, 2)]
    result, _ = do_run(confdir, uris)
    assert (result.status, result.code) == ("error", expected), result.message
    assert [d.is_successful for d in result.disks] == [False, False], "one entry per disk"


def test_run_reaches_its_crash_points_in_order(loopfs, azurite, confdir, tmp_path, monkeypatch):
    from plumbing.crashpoints import TRACE_VARIABLE, read_trace

    write_vmbackup_conf(confdir, [loopfs("ext4").mountpoint])
    scripts(confdir, tmp_path)
    trace = tmp_path / "trace"
    monkeypatch.setenv(TRACE_VARIABLE, str(trace))
    result, _ = do_run(confdir, make_disks(azurite, 1))
    assert result.ok, result.message
    names = [name for _pid, name in read_trace(str(trace)) if name.startswith("snapshot.run.")]
    assert names == [f"snapshot.run.{step}" for step in (
        "after_preflight", "after_pre_scripts", "before_disk_snapshots", "after_disk_snapshots",
        "before_post_scripts", "after_post_scripts")], names
