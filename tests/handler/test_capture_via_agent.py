"""packetCapture through the agent: start, query, stop, delete, disable; uploads to Azurite."""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import dpkt
import pytest

from devtools.fakeagent import FakeAgent
from devtools.netns import Topology, veth

pytestmark = pytest.mark.root

VM, PEER = "10.199.60.1", "10.199.60.2"
SENDER = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for port, count in ((5000, int(sys.argv[1])), (6000, int(sys.argv[2]))):
    for i in range(count):
        s.sendto(b"payload-%d" % i, ("%s" % sys.argv[3], port))
"""


@pytest.fixture
def lab():
    with Topology("hcap") as topo:
        vm, peer = topo.namespace("vm"), topo.namespace("peer")
        veth(vm, "cap0", [f"{VM}/24"], peer, "peer0", [f"{PEER}/24"])
        yield vm, peer


@pytest.fixture
def capture_agent(agent: FakeAgent, lab, tmp_path) -> FakeAgent:
    root = tmp_path / "captures"
    root.mkdir()
    agent.extra_env.update(PACKET_CAPTURE_ROOT=str(root), PACKET_CAPTURE_NETNS=lab[0].name)
    return agent


def capture(name: str, action: str = "start", **extra) -> dict:
    return {"commandToExecute": "packetCapture",
            "packetCapture": {"name": name, "action": action, **extra}}


def substatus(agent: FakeAgent, ext_dir: Path, seq: int, name: str) -> dict:
    status = agent.status(ext_dir, seq) or {}
    for sub in status.get("substatus") or []:
        if sub["name"] == name:
            return json.loads(sub["formattedMessage"]["message"])
    return {}


def wait_for_state(agent, ext_dir, seq, name, state, timeout=30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = substatus(agent, ext_dir, seq, name)
        if found.get("packetCaptureStatus") == state:
            return found
        time.sleep(0.2)
    raise AssertionError(f"{name} never reached {state}: {found}")


def send(peer, to_5000: int, to_6000: int) -> None:
    peer.run(["python3", "-c", SENDER, str(to_5000), str(to_6000), VM], timeout=30)


def test_start_stop_delete_through_the_agent(capture_agent, ext_dir, azurite, lab, tmp_path):
    agent, (_, peer) = capture_agent, lab
    sas_uri = azurite.blob_sas_uri("captures", "vm1/first.cap")
    storage_path, token = sas_uri.split("?", 1)
    local = str(tmp_path / "captures" / "first.cap")
    start = capture("first", timeLimitInSeconds=120, interfaces=["cap0"],
                    filters=[{"protocol": "UDP", "localPort": "5000"}],
                    storageLocation={"storagePath": storage_path, "filePath": local})
    agent.write_settings(ext_dir, 1, start, {"storageSasToken": token})
    assert agent.run(ext_dir, "enable", 1).returncode == 0
    running = wait_for_state(agent, ext_dir, 1, "first", "Running")
    assert agent.status(ext_dir, 1)["status"] == "success", "start succeeds once it runs"
    assert running["interfaces"] == ["cap0"], running
    send(peer, 40, 25)

    agent.write_settings(ext_dir, 2, capture("first", "stop"))
    assert agent.run(ext_dir, "enable", 2).returncode == 0
    final = agent.wait_terminal(ext_dir, 2, timeout=60)
    assert final["status"] == "success", final
    stopped = substatus(agent, ext_dir, 2, "first")
    assert stopped["packetCaptureStatus"] == "Stopped", stopped
    assert stopped["stopReason"] == "StoppedByRequest", stopped
    assert stopped["packetsCaptured"] == 40, "exactly the UDP/5000 packets"
    assert stopped["uploadedUrl"] == storage_path, "the URL shown has no SAS"
    packets = list(dpkt.pcap.Reader(
        __import__("io").BytesIO(azurite.read_blob("captures", "vm1/first.cap"))))
    assert len(packets) == 40, f"the uploaded file holds {len(packets)} packets"
    assert Path(local).exists(), "the local copy stays until delete"

    agent.write_settings(ext_dir, 3, capture("first", "delete"))
    assert agent.run(ext_dir, "enable", 3).returncode == 0
    assert agent.status(ext_dir, 3)["status"] == "success"
    assert not Path(local).exists(), "delete removes the local file"
    assert substatus(agent, ext_dir, 3, "first") == {}, "a deleted capture leaves the status"
    assert azurite.read_blob("captures", "vm1/first.cap"), "delete never removes the blob"

    agent.write_settings(ext_dir, 4, capture("nosuch", "stop"))
    assert agent.run(ext_dir, "enable", 4).returncode != 0
    missing = agent.status(ext_dir, 4)
    assert missing["status"] == "error" and missing["code"] == 150, missing


def test_disable_stops_every_session_and_each_still_uploads(capture_agent, ext_dir, azurite,
                                                            lab, tmp_path):
    agent, (_, peer) = capture_agent, lab
    for seq, name in ((1, "alpha"), (2, "beta")):
        sas_uri = azurite.blob_sas_uri("captures", f"disable/{name}.cap")
        path, token = sas_uri.split("?", 1)
        agent.write_settings(ext_dir, seq, capture(
            name, timeLimitInSeconds=300, interfaces=["cap0"],
            storageLocation={"storagePath": path, "filePath": str(
                tmp_path / "captures" / f"{name}.cap")}), {"storageSasToken": token})
        assert agent.run(ext_dir, "enable", seq).returncode == 0
        wait_for_state(agent, ext_dir, seq, name, "Running")
    send(peer, 10, 0)
    assert agent.run(ext_dir, "disable", 2).returncode == 0
    for name in ("alpha", "beta"):
        done = substatus(agent, ext_dir, 2, name)
        assert done["packetCaptureStatus"] == "Stopped", done
        assert azurite.read_blob("captures", f"disable/{name}.cap")[:4] in (
            b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"), f"{name} was uploaded as pcap"


def test_bad_capture_settings_name_every_field(capture_agent, ext_dir):
    agent = capture_agent
    bad = capture("x", bytesToCapturePerPacket=-1, filters=[{"protocol": "SCTP",
                                                              "localPort": "70000"}],
                  storageLocation={"filePath": "/etc/passwd"})
    agent.write_settings(ext_dir, 1, bad)
    assert agent.run(ext_dir, "enable", 1).returncode != 0
    status = agent.status(ext_dir, 1)
    message = status["formattedMessage"]["message"]
    assert status["status"] == "error" and 100 <= status["code"] < 200, status
    for field in ("bytesToCapturePerPacket", "protocol", "localPort", "filePath"):
        assert field in message, f"{field} missing from {message!r}"


def test_a_session_whose_worker_died_is_error_agent_stopped(capture_agent, ext_dir, tmp_path):
    agent = capture_agent
    agent.write_settings(ext_dir, 1, capture(
        "doomed", timeLimitInSeconds=300, interfaces=["cap0"],
        storageLocation={"filePath": str(tmp_path / "captures" / "doomed.cap")}))
    assert agent.run(ext_dir, "enable", 1).returncode == 0
    wait_for_state(agent, ext_dir, 1, "doomed", "Running")
    (job_file,) = (ext_dir / "state" / "jobs").glob("*.json")
    os.kill(json.loads(job_file.read_text())["pid"], signal.SIGKILL)
    agent.run(ext_dir, "enable", 1)  # the agent restarts and re-runs enable
    died = substatus(agent, ext_dir, 1, "doomed")
    assert died["packetCaptureStatus"] == "Error", died
    assert died["packetCaptureError"] == ["AgentStopped"], died
    assert died["localPath"], f"where the partial capture is stays in the status: {died}"
    sub = [s for s in agent.status(ext_dir, 1)["substatus"] if s["name"] == "doomed"][0]
    assert sub["status"] == "error", sub
