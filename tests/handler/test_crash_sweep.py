"""SIGKILL at every step of every operation, then the agent's re-run: nothing left frozen, no
record stuck, no success without its result, a terminal and honest status.

The steps come from the code: a first run records every crash point it reaches
(`plumbing.crashpoints`), then the run is replayed once per point with that point armed.
"""
# ruff: noqa: F811 - fixtures imported so pytest finds them here
from __future__ import annotations

import io
import json
import os
import subprocess
from typing import List

import dpkt
import pytest

from handler.state import StateStore
from tests.handler.crashsweep import Run, sweep
from tests.handler.test_capture_via_agent import capture, lab  # noqa: F401
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
FREEZE_TIMEOUT = 20


def settled(run: Run, seq: int = 1) -> List[str]:
    """The promises every operation keeps, whatever was killed and when."""
    problems = []
    status = run.agent.status(run.ext_dir, seq)
    if status is None or status["status"] not in ("success", "error"):
        problems.append(f"sequence {seq} is not terminal: {status and status['status']}")
    elif status["status"] == "error" and (status["code"] == 1 or any(
            word in status["formattedMessage"]["message"]
            for word in ("unexpected", "internal error"))):
        problems.append(f"internal error reported: {status['formattedMessage']['message']}")
    store = StateStore(run.ext_dir / "state", run.ext_dir / "mrseq")
    stuck = [job.job_id for job in store.jobs() if not job.finished]
    if stuck:
        problems.append(f"job records never settled: {stuck}")
    return problems


def blob_matches_local(run: Run, azurite, container: str, blob: str) -> List[str]:
    local = run.agent.status(run.ext_dir, 1) or {}
    try:
        remote = json.loads(azurite.read_blob(container, blob))[0]["status"]
    except Exception as exc:  # noqa: BLE001 - a missing blob is a finding, not a crash
        return [f"status blob unreadable: {exc}"]
    if (remote["status"], remote["code"]) != (local.get("status"), local.get("code")):
        return [f"status blob says {remote['status']}/{remote['code']}, local says "
                f"{local.get('status')}/{local.get('code')}"]
    return []


def report(points, failures) -> str:
    lines = [f"{len(failures)} of {len(points)} crash points broke a promise:"]
    for where, problems in failures.items():
        lines += [f"  {where}: {p}" for p in problems]
    return "\n".join(lines)


def test_connectivity_check_survives_a_kill_at_every_step(tmp_path, certificate, extension_zip,
                                                          azurite, listener):
    def scenario(run: Run) -> None:
        uris = {"statusBlobUri": azurite.blob_sas_uri("sweep", f"{run.trace.parent.name}.st"),
                "logsBlobUri": azurite.blob_sas_uri("sweep", f"{run.trace.parent.name}.log")}
        run.agent.write_settings(run.ext_dir, 1, check_settings(listener, probes=2), uris)
        run.agent.run(run.ext_dir, "enable", 1)

    def check(run: Run) -> List[str]:
        problems = settled(run)
        if not problems:
            problems += blob_matches_local(run, azurite, "sweep", f"{run.trace.parent.name}.st")
        return problems

    points, failures = sweep(tmp_path, certificate, extension_zip, {}, scenario, check)
    print(f"\n{len(points)} crash points swept: {sorted({name for name, _ in points})}")
    assert len(points) >= 8, f"too few crash points reached: {points}"
    assert not failures, report(points, failures)


def test_packet_capture_survives_a_kill_at_every_step(tmp_path, certificate, extension_zip,
                                                      azurite, lab):
    vm, _ = lab

    def scenario(run: Run) -> None:
        root = run.trace.parent / "captures"
        root.mkdir(exist_ok=True)
        run.agent.extra_env.update(PACKET_CAPTURE_ROOT=str(root), PACKET_CAPTURE_NETNS=vm.name)
        blob = f"{run.trace.parent.name}.cap"
        path, token = azurite.blob_sas_uri("sweepcap", blob).split("?", 1)
        run.notes.update(blob=blob, local=str(root / "c.cap"))
        run.agent.write_settings(run.ext_dir, 1, capture(
            "c", timeLimitInSeconds=2, interfaces=["cap0"],
            storageLocation={"storagePath": path, "filePath": run.notes["local"]}),
            {"storageSasToken": token})
        run.agent.run(run.ext_dir, "enable", 1)

    def check(run: Run) -> List[str]:
        problems = settled(run)
        (sub,) = (run.agent.status(run.ext_dir, 1) or {}).get("substatus") or [None]
        session = json.loads(sub["formattedMessage"]["message"]) if sub else {}
        state = session.get("packetCaptureStatus")
        if state == "Stopped":
            try:
                data = azurite.read_blob("sweepcap", str(run.notes["blob"]))
                list(dpkt.pcap.Reader(io.BytesIO(data)))
            except Exception as exc:  # noqa: BLE001
                problems.append(f"capture reported Stopped but its blob is not a pcap: {exc}")
        elif state == "Error":
            kept = [p for p in session.get("localFiles") or [] if os.path.exists(p)]
            if session.get("localFiles") and not kept:
                problems.append(f"the status names local files that do not exist: {session}")
        else:
            problems.append(f"the session never ended: {state}")
        return problems

    points, failures = sweep(tmp_path, certificate, extension_zip, {}, scenario, check)
    print(f"\n{len(points)} crash points swept: {sorted({name for name, _ in points})}")
    assert len(points) >= 8, f"too few crash points reached: {points}"
    assert not failures, report(points, failures)


def test_vmsnapshot_survives_a_kill_at_every_step(tmp_path, certificate, extension_zip, azurite,
                                                  loopfs, confdir):
    mount = loopfs("ext4").mountpoint
    write_vmbackup_conf(confdir, [mount], timeout=FREEZE_TIMEOUT)

    def scenario(run: Run) -> None:
        run.agent.extra_env.update(snapshot_env(confdir))
        (disk,) = make_disks(azurite, 1)
        run.notes["disk"] = disk
        public, protected = settings_dicts([disk], status=azurite.blob_sas_uri(
            "sweepsnap", f"{run.trace.parent.name}.st"))
        run.agent.write_settings(run.ext_dir, 1, public, protected)
        run.agent.run(run.ext_dir, "enable", 1)

    def check(run: Run) -> List[str]:
        problems = [] if writable(mount) else [f"{mount} is still frozen"]
        problems += settled(run)
        status = run.agent.status(run.ext_dir, 1) or {}
        container = str(run.notes["disk"]).split("?")[0].rsplit("/", 2)[-2]
        taken = [b for b in azurite.service().get_container_client(container)
                 .list_blobs(include=["snapshots"]) if b.snapshot]
        if status.get("status") == "success" and not taken:
            problems.append(f"success (code {status.get('code')}) without a snapshot")
        if status.get("code") == 3:
            problems.append("'already processed' for a task that ran once")
        return problems

    points, failures = sweep(tmp_path, certificate, extension_zip, {}, scenario, check)
    print(f"\n{len(points)} crash points swept: {sorted({name for name, _ in points})}")
    assert len(points) >= 8, f"too few crash points reached: {points}"
    assert not failures, report(points, failures)


def writable(mount: str) -> bool:
    """A write and fsync under the mount finishes within the freeze timeout plus 1 s."""
    probe = os.path.join(mount, ".sweep-probe")
    code = f"import os; f=open({probe!r},'w'); f.write('x'); f.flush(); os.fsync(f.fileno())"
    try:
        subprocess.run(["python3", "-c", code], timeout=FREEZE_TIMEOUT + 1, check=True)
        return True
    except (subprocess.TimeoutExpired, subprocess.CalledProcessError):
        return False
