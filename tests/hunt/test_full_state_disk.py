"""Hunt: the state folder's filesystem is full. Enable's OSError escapes to main, which
reports code 1 (for VMSnapshot the backup service's number for *success*) in the local status
only: the status blob, which is all the backup service reads, is never written."""
from __future__ import annotations

import errno
import json
import os
import shutil

import pytest

from handler.state import StateStore
from plumbing.crashpoints import TRACE_VARIABLE
from tests.handler.test_snapshot_via_agent import snapshot_env
from tests.hunt.test_settings_replaced import snapshots_of
from tests.hunt.test_stopped_lock_holder import Turnstile
from tests.snapshot.conftest import make_disks, settings_dicts, wait_for, write_vmbackup_conf

pytestmark = pytest.mark.root


def fill(mountpoint: str) -> None:
    """Write until the filesystem has no block left (root may use the reserved ones too)."""
    block = b"\0" * (1 << 20)
    with open(os.path.join(mountpoint, "filler"), "wb") as stream:
        for _ in range(256):  # bounded: the filesystem is far smaller
            try:
                stream.write(block)
                stream.flush()
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                break
    small = b"\0" * 4096
    for index in range(4096):
        try:
            with open(os.path.join(mountpoint, f"f{index}"), "wb") as stream:
                stream.write(small)
        except OSError:
            break


def state_on_full_disk(ext_dir, loopfs) -> None:
    small = loopfs("ext4", size_mb=8).mountpoint
    for sub in ("ops", "jobs"):
        os.makedirs(os.path.join(small, sub))
    shutil.rmtree(ext_dir / "state")
    (ext_dir / "state").symlink_to(small)
    fill(small)


def test_enable_with_a_full_state_disk(agent, ext_dir, azurite, confdir, loopfs):
    write_vmbackup_conf(confdir, [], fsfreeze=False)
    agent.extra_env.update(snapshot_env(confdir))
    state_on_full_disk(ext_dir, loopfs)
    status_uri = azurite.blob_sas_uri("fullstatus", "status.json")
    public, protected = settings_dicts(make_disks(azurite, 1), status=status_uri)
    agent.write_settings(ext_dir, 1, public, protected)
    enable = agent.run(ext_dir, "enable", 1)
    status = agent.status(ext_dir, 1)
    assert status is not None and status["status"] == "error", enable
    assert status["code"] not in (0, 1, 3, 4), \
        f"a failure reported under a success number: {status['code']} " \
        f"{status['formattedMessage']['message']!r}"
    try:
        blob = json.loads(azurite.read_blob("fullstatus", "status.json"))[0]["status"]
    except Exception as exc:  # noqa: BLE001 - a missing blob is the finding
        pytest.fail(f"the status blob was never written: {str(exc).splitlines()[0]}")
    assert blob["status"] == "error", blob


def test_a_snapshot_taken_is_reported_when_the_state_disk_fills_during_the_run(
        agent, ext_dir, azurite, confdir, loopfs, tmp_path):
    """The disk fills while the worker snapshots: it cannot record its result, dies with code 1
    in the local status and never writes the status blob; the disk has its snapshot."""
    write_vmbackup_conf(confdir, [], fsfreeze=False)
    agent.extra_env.update(snapshot_env(confdir))
    small = loopfs("ext4", size_mb=8).mountpoint
    shutil.copytree(ext_dir / "state", small, dirs_exist_ok=True)
    shutil.rmtree(ext_dir / "state")
    (ext_dir / "state").symlink_to(small)
    gate = Turnstile(tmp_path / "trace.fifo", "snapshot.run.after_disk_snapshots")
    agent.extra_env[TRACE_VARIABLE] = gate.path
    (disk,) = make_disks(azurite, 1)
    status_uri = azurite.blob_sas_uri("fillstatus", "status.json")
    public, protected = settings_dicts([disk], status=status_uri)
    agent.write_settings(ext_dir, 1, public, protected)
    try:
        assert agent.run(ext_dir, "enable", 1).returncode == 0
        assert gate.holding.wait(60), f"the worker never snapshotted: {gate.lines[-5:]}"
        fill(small)
    finally:
        gate.open_wide()
    assert wait_for(lambda: snapshots_of(azurite, disk), timeout=10), "the snapshot was taken"
    reported = wait_for(lambda: json.loads(azurite.read_blob("fillstatus", "status.json"))[0][
        "status"]["status"] != "transitioning", timeout=60)
    local = agent.status(ext_dir, 1) or {}
    store = StateStore(ext_dir / "state", ext_dir / "mrseq")
    jobs = [(job.name, job.state) for job in store.jobs()]
    assert reported, ("the status blob never leaves transitioning, though the snapshot was "
                      f"taken; local status {local.get('status')}/{local.get('code')} "
                      f"{local.get('formattedMessage', {}).get('message')!r}; jobs {jobs}")


def test_a_full_status_folder_does_not_keep_the_status_blob_unwritten(agent, ext_dir, azurite,
                                                                      confdir, loopfs):
    """The agent's status folder is on a full filesystem: the local file cannot be written,
    but the status blob (all the backup service reads) still gets the run's outcome."""
    write_vmbackup_conf(confdir, [], fsfreeze=False)
    agent.extra_env.update(snapshot_env(confdir))
    small = loopfs("ext4", size_mb=8).mountpoint
    shutil.rmtree(ext_dir / "status", ignore_errors=True)
    (ext_dir / "status").symlink_to(small)
    fill(small)
    status_uri = azurite.blob_sas_uri("fullfolder", "status.json")
    public, protected = settings_dicts([], status=status_uri)
    agent.write_settings(ext_dir, 1, public, protected)
    enable = agent.run(ext_dir, "enable", 1)
    assert not enable.killed, enable

    def blob_status():
        try:
            return json.loads(azurite.read_blob("fullfolder", "status.json"))[0]["status"]
        except Exception:  # noqa: BLE001 - not there yet
            return None
    assert wait_for(lambda: (blob_status() or {}).get("status") not in (None, "transitioning"),
                    timeout=60), f"the status blob never got the outcome: {blob_status()}"
