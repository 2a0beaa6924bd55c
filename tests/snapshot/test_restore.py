"""Recovery points listed from disk snapshots and RestoreDisks through the CLI, on Azurite."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from snapshot.restore import RecoveryPoint, list_recovery_points
from tests.snapshot.conftest import (
    account_sas_container_uri,
    make_disks,
    settings_dicts,
    write_vmbackup_conf,
)
from tests.snapshot.test_runner import do_run

pytestmark = pytest.mark.root
ROOT = Path(__file__).resolve().parents[2]


def cli(*args) -> dict:
    done = subprocess.run([sys.executable, "-m", "snapshot", *args, "--json"], cwd=str(ROOT),
                          capture_output=True, text=True, timeout=120, check=False,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert done.returncode == 0, f"CLI {args[0]} failed: {done.stderr}"
    return json.loads(done.stdout)


def test_list_and_restore_disks_byte_for_byte(loopfs, azurite, confdir):
    write_vmbackup_conf(confdir, [loopfs("ext4").mountpoint])
    uris = make_disks(azurite, 2)
    container = urlsplit(uris[0]).path.split("/")[-2]
    first, _ = do_run(confdir, uris)
    assert first.ok, first.message
    service = azurite.service()
    disk0 = service.get_blob_client(container, "disk0.vhd")
    disk0.upload_page(b"\xee" * 512, offset=0, length=512)  # the disk moves on after backup
    second, _ = do_run(confdir, uris)
    assert second.ok, second.message
    source = account_sas_container_uri(azurite, container)
    points = cli("list", "--container", source)
    assert [p["taskId"] for p in points] == [first.task_id, second.task_id], points
    assert points[0]["recoveryPointType"] == "FileSystemConsistent", points[0]
    assert [d["disk"] for d in points[0]["disks"]] == ["disk0.vhd", "disk1.vhd"], points[0]
    target = azurite.container_sas_uri("restored" + container[-8:])
    outcome = cli("restore", "--container", source, "--task", first.task_id, "--target", target)
    assert len(outcome["disks"]) == 2, outcome
    for disk, info in zip(("disk0.vhd", "disk1.vhd"), first.disks):
        snap_time = info.snapshot_time
        expected = service.get_blob_client(container, disk, snapshot=snap_time)\
            .download_blob().readall()
        restored = azurite.read_blob("restored" + container[-8:], f"{first.task_id}/{disk}")
        assert restored == expected, f"restored {disk} must equal its snapshot byte for byte"
    current = disk0.download_blob().readall()
    restored0 = azurite.read_blob("restored" + container[-8:], f"{first.task_id}/disk0.vhd")
    assert restored0 != current, "the restore must come from the snapshot, not the live disk"
    vmconfig = json.loads(azurite.read_blob("restored" + container[-8:],
                                            f"{first.task_id}/vmconfig.json"))
    assert vmconfig["restoreType"] == "RestoreDisks" and len(vmconfig["disks"]) == 2, vmconfig
    assert "sig=" not in json.dumps(outcome) + json.dumps(vmconfig), "no SAS in the output"


def test_unknown_task_is_a_coded_error(azurite):
    target = azurite.container_sas_uri("emptyrestore")
    done = subprocess.run([sys.executable, "-m", "snapshot", "restore", "--container", target,
                           "--task", "nope_1", "--target", target, "--json"], cwd=str(ROOT),
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1 and "no recovery point" in done.stderr, done.stderr
    assert list_recovery_points(target) == [], "an empty container has no recovery points"
    assert RecoveryPoint  # the public type stays importable for the handler


def test_cli_run_dedupes_by_task_id(azurite, confdir, tmp_path):
    (confdir / "vmbackup.conf").write_text("[SnapshotThread]\nfsfreeze = False\n")

    public, protected = settings_dicts(make_disks(azurite, 1))
    (tmp_path / "pub.json").write_text(json.dumps(public))
    (tmp_path / "pro.json").write_text(json.dumps(protected))
    env = dict(os.environ, PYTHONPATH=str(ROOT), VMSNAPSHOT_CONF=str(confdir / "vmbackup.conf"),
               VMSNAPSHOT_PLUGIN_CONFIG=str(confdir / "none.json"),
               VMSNAPSHOT_WORKLOAD_CONF=str(confdir / "none.conf"))
    codes = []
    for _ in range(2):
        argv = [sys.executable, "-m", "snapshot", "run", "--public", str(tmp_path / "pub.json"),
                "--protected", str(tmp_path / "pro.json"), "--state-dir", str(tmp_path / "state")]
        done = subprocess.run(argv, cwd=str(ROOT), env=env, capture_output=True, text=True,
                              timeout=120, check=False)
        codes.append(json.loads(done.stdout)[0]["status"]["code"])
    assert codes == ["1", "3"], f"second run of one task is 'already processed': {codes}"


class PendingCopyProxy:
    """Forwards to Azurite, but every blob's copy status reads `pending`: a copy that never
    ends, which Azurite (whose copies within one account finish at once) never shows."""

    def __init__(self, azurite) -> None:
        import http.server
        import threading

        from devtools.azurite import forward

        port = self._azurite_port = azurite.port

        def pending(name: str, value: str) -> str:
            return "pending" if name.lower() == "x-ms-copy-status" else value

        class Handler(http.server.BaseHTTPRequestHandler):
            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                forward(self, port, self.rfile.read(length) if length else None, pending)

            do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _any

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def route(self, uri: str) -> str:
        return uri.replace(f"127.0.0.1:{self._azurite_port}",
                           f"127.0.0.1:{self.server.server_address[1]}")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_copy_that_never_ends_fails_when_the_clock_passes_the_copy_timeout(
        loopfs, azurite, confdir):
    from plumbing.clock import ManualClock
    from snapshot.errors import RestoreError
    from snapshot.restore import COPY_TIMEOUT, restore_disks

    write_vmbackup_conf(confdir, [loopfs("ext4").mountpoint])
    uris = make_disks(azurite, 1)
    container = urlsplit(uris[0]).path.split("/")[-2]
    first, _ = do_run(confdir, uris)
    assert first.ok, first.message
    proxy = PendingCopyProxy(azurite)
    clock = ManualClock()
    try:
        source = account_sas_container_uri(azurite, container)  # the copy reads it directly
        target = proxy.route(azurite.container_sas_uri("pending" + container[-8:]))
        with pytest.raises(RestoreError, match="disk0.vhd ended as timeout"):
            restore_disks(source, first.task_id, target, clock=clock)
    finally:
        proxy.close()
    # It waited out the whole timeout on the clock given, polling: not on the real one.
    assert COPY_TIMEOUT <= clock.monotonic() < COPY_TIMEOUT + 5
