"""The agent's lifecycle, step for step, against the packaged handler and a real Azurite."""
from __future__ import annotations

import json
import os
import signal
import socket
import threading
from pathlib import Path

import pytest

from devtools.fabric import CIPHERS
from devtools.fakeagent import FakeAgent

pytestmark = pytest.mark.root


@pytest.fixture
def listener():
    """A TCP server on loopback that accepts and closes, for the connectivity check."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                conn.close()
            except OSError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(2)
    server.close()


@pytest.fixture(params=CIPHERS)
def any_cipher(request, agent: FakeAgent) -> str:
    """Run a scenario once per content cipher the fabric uses."""
    agent.cipher = request.param
    return request.param


def check_settings(port: int, probes: int = 3) -> dict:
    return {"commandToExecute": "connectivityCheck", "connectivityCheck": {
        "destination": {"address": "127.0.0.1", "port": port}, "protocol": "Tcp",
        "probes": probes}}


def blob_uris(azurite, name: str) -> dict:
    return {"statusBlobUri": azurite.blob_sas_uri("status", f"{name}.status"),
            "logsBlobUri": azurite.blob_sas_uri("logs", f"{name}.log")}


def jobs_of(ext_dir: Path) -> list:
    return sorted(p.name for p in (ext_dir / "state" / "jobs").glob("*.json"))


@pytest.mark.parametrize("cipher", CIPHERS)
def test_fresh_install_and_enable_reaches_success_with_blobs(agent, ext_dir, azurite, listener,
                                                             cipher):
    uris = blob_uris(azurite, f"fresh-{cipher}")
    agent.write_settings(ext_dir, 1, check_settings(listener), uris, cipher=cipher)
    result = agent.run(ext_dir, "enable", 1)
    assert result.returncode == 0, result.output
    (job,) = [json.loads(p.read_text()) for p in (ext_dir / "state" / "jobs").glob("*.json")]
    assert job["pid"] > 0, "enable hands the work to a detached worker"
    status = agent.wait_terminal(ext_dir, 1)
    assert status["status"] == "success", status
    (sub,) = status["substatus"]
    answer = json.loads(sub["formattedMessage"]["message"])
    assert answer["connectionStatus"] == "Reachable" and answer["probesSent"] == 3, answer
    blob = json.loads(azurite.read_blob("status", f"fresh-{cipher}.status"))
    assert blob[0]["status"]["status"] == "success", "status blob lags the local status"
    log = azurite.read_blob("logs", f"fresh-{cipher}.log").decode()
    assert "connectivity check result" in log, log[-500:]
    events = sorted((agent.log_root / agent.handler_name / "events").glob("*.json"))
    assert events, "telemetry events are written to eventsFolder"
    for path in events:
        (event,) = json.loads(path.read_text())
        assert set(event) == {"Version", "Timestamp", "TaskName", "EventLevel", "Message",
                              "EventPid", "EventTid", "OperationId"}, event
        assert len(path.read_bytes()) <= 6 * 1024 and len(event["Message"]) <= 3 * 1024


def test_new_settings_then_same_sequence_reenable_after_restart(agent, any_cipher, ext_dir,
                                                               listener):
    agent.write_settings(ext_dir, 1, check_settings(listener))
    assert agent.run(ext_dir, "enable", 1).returncode == 0
    agent.wait_terminal(ext_dir, 1)
    agent.write_settings(ext_dir, 2, check_settings(listener, probes=5))
    assert agent.run(ext_dir, "enable", 2).returncode == 0
    first = agent.wait_terminal(ext_dir, 2)
    answer = json.loads(first["substatus"][0]["formattedMessage"]["message"])
    assert answer["probesSent"] == 5, "new settings must be applied"
    jobs_before = jobs_of(ext_dir)
    # The agent restarts and re-runs enable with the same sequence number.
    rerun = agent.run(ext_dir, "enable", 2)
    assert rerun.returncode == 0, rerun.output
    assert jobs_of(ext_dir) == jobs_before, "re-enable must not redo the work"
    again = agent.status(ext_dir, 2)
    assert again["status"] == "success", "a terminal status must never go back to transitioning"
    assert again["substatus"] == first["substatus"]


def test_update_in_the_agents_order_keeps_state_and_does_not_redo(agent, any_cipher, ext_dir,
                                                                  extension_zip, listener):
    agent.write_settings(ext_dir, 1, check_settings(listener))
    agent.run(ext_dir, "enable", 1)
    agent.wait_terminal(ext_dir, 1)
    jobs_before = jobs_of(ext_dir)
    runs = agent.update(ext_dir, extension_zip, "1.1.0", seq=1)
    new_dir = runs.pop("new_dir")
    for step, run in runs.items():
        assert run.returncode == 0, f"{step} failed: {run.output}"
    assert not ext_dir.exists(), "the old version's folder is deleted"
    assert (new_dir / "mrseq").read_text().strip() == "1"
    status = agent.status(new_dir, 1)
    assert status["status"] == "success", f"after update: {status}"
    assert jobs_of(new_dir) == jobs_before, "the new version must not re-run sequence 1"


def test_disable_stops_running_workers_and_uninstall_cleans_up(agent, any_cipher, ext_dir):
    # A check that cannot finish quickly: 100 probes to a listener that never accepts.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(0)  # never accepts: SYNs queue up, then time out per probe
    try:
        port = silent.getsockname()[1]
        agent.write_settings(ext_dir, 1, check_settings(port, probes=100))
        assert agent.run(ext_dir, "enable", 1).returncode == 0
        assert agent.status(ext_dir, 1)["status"] == "transitioning"
        disable = agent.run(ext_dir, "disable", 1)
        assert disable.returncode == 0, disable.output
        status = agent.status(ext_dir, 1)
        assert status["status"] == "error" and status["code"] == 51, f"after disable: {status}"
        assert "stopped by disable" in status["formattedMessage"]["message"]
    finally:
        silent.close()
    runs = agent.remove(ext_dir, 1)
    assert runs["uninstall"].returncode == 0, runs["uninstall"].output


def test_a_killed_worker_is_reported_as_error_by_the_next_enable(agent, any_cipher, ext_dir):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(0)
    try:
        agent.write_settings(ext_dir, 1, check_settings(silent.getsockname()[1], probes=100))
        agent.run(ext_dir, "enable", 1)
        (job_file,) = (ext_dir / "state" / "jobs").glob("*.json")
        pid = json.loads(job_file.read_text())["pid"]
        os.kill(pid, signal.SIGKILL)
        rerun = agent.run(ext_dir, "enable", 1)
        status = agent.status(ext_dir, 1)
        assert status["status"] == "error" and status["code"] == 50, status
        assert "killed" in status["formattedMessage"]["message"]
        assert rerun.returncode != 0
    finally:
        silent.close()


@pytest.mark.parametrize("how,code", [("unreachable", 41), ("forbidden", 42), ("expired", 43)])
def test_status_blob_failures_are_terminal_coded_errors(agent, ext_dir, azurite, listener,
                                                        how, code):
    good = azurite.blob_sas_uri("status", f"bad-{how}.status")
    uri = {"unreachable": "http://127.0.0.1:9/devstoreaccount1/status/x?sv=1&sig=UNREACH4BLE",
           "forbidden": good.split("sig=")[0] + "sig=Rm9yZ2VkU2lnbmF0dXJl",
           "expired": azurite.expired_blob_sas_uri("status", f"bad-{how}.status")}[how]
    agent.write_settings(ext_dir, 1, check_settings(listener), {"statusBlobUri": uri})
    result = agent.run(ext_dir, "enable", 1)
    assert result.returncode != 0, "a status blob that cannot be written is a failure"
    status = agent.status(ext_dir, 1)
    assert status["status"] == "error" and status["code"] == code, status
    assert "status blob" in status["formattedMessage"]["message"]
    text = json.dumps(status) + result.output
    assert "UNREACH4BLE" not in text and "Rm9yZ2VkU2lnbmF0dXJl" not in text
    assert jobs_of(ext_dir) == [], "no work starts when its status cannot be delivered"


def test_a_status_blob_failing_after_the_start_is_recorded_locally(agent, ext_dir, azurite):
    from datetime import timedelta

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(0)  # never accepts: each probe runs to its timeout, the check outlives the SAS
    try:
        # 8 s: enough for enable's first write on a loaded machine (3 s was not: the SAS, cut
        # to the second, had expired before it), and 15 probes of 1 s each outlive it.
        short = azurite.blob_sas_uri("status", "short.status", expires_in=timedelta(seconds=8))
        agent.write_settings(ext_dir, 1, check_settings(silent.getsockname()[1], probes=15),
                             {"statusBlobUri": short})
        assert agent.run(ext_dir, "enable", 1).returncode == 0, "the first write succeeded"
        assert json.loads(azurite.read_blob("status", "short.status"))[0]["status"][
            "status"] == "transitioning"
        status = agent.wait_terminal(ext_dir, 1, timeout=90)
    finally:
        silent.close()
    assert status["status"] == "error" and status["code"] == 43, status
    message = status["formattedMessage"]["message"]
    assert "status blob not written" in message and "127.0.0.1" in message, "both results"
    names = [s["name"] for s in status["substatus"]]
    assert "StatusBlobUpload" in names and "connectivityCheck" in names, names
