"""A single-file capture streamed through the agent: a worker SIGKILLed 45 s in leaves in
storage a valid pcap of every packet up to its last commit; the next enable sends the rest."""
# ruff: noqa: F811 - fixtures imported so pytest finds them here
from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import List

import dpkt
import pytest

from devtools.azurite import Azurite
from tests.handler.test_capture_via_agent import (  # noqa: F401 - fixtures
    VM,
    capture,
    capture_agent,
    lab,
    substatus,
    wait_for_state,
)

pytestmark = pytest.mark.root

RATE, SECONDS = 100, 60  # numbered datagrams per second, for at most this long
SENDER = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
start = time.monotonic()
for i in range(int(sys.argv[2]) * int(sys.argv[3])):
    s.sendto(i.to_bytes(4, "big") + bytes(996), (sys.argv[1], 5000))
    time.sleep(max(0.0, start + (i + 1) / int(sys.argv[2]) - time.monotonic()))
"""
KILL_AFTER = 45.0


def numbers(data: bytes) -> List[int]:
    found = []
    for _, frame in dpkt.pcap.Reader(io.BytesIO(data)):
        udp = dpkt.ethernet.Ethernet(frame).data.data
        found.append(int.from_bytes(bytes(udp.data)[:4], "big"))
    return found


def tshark_problems(data: bytes) -> str:
    """What tshark says is wrong with a pcap ('' when it reads it all)."""
    read = subprocess.run(["tshark", "-r", "-"], input=data, capture_output=True, timeout=60)
    said = [line for line in read.stderr.decode(errors="replace").splitlines()
            if line.strip() and not line.startswith("Running as user")]
    if read.returncode and not said:
        said = [f"exit code {read.returncode}"]
    return "\n".join(said)


def test_a_worker_killed_mid_capture_leaves_a_valid_pcap_in_storage(
        capture_agent, ext_dir, azurite, lab, tmp_path):
    agent, (_, peer) = capture_agent, lab
    storage_path, token = azurite.blob_sas_uri("stream", "vm1/long.cap").split("?", 1)
    local = str(tmp_path / "captures" / "long.cap")
    agent.write_settings(ext_dir, 1, capture(
        "long", timeLimitInSeconds=300, interfaces=["cap0"],
        filters=[{"protocol": "UDP", "localPort": "5000"}],
        storageLocation={"storagePath": storage_path, "filePath": local}),
        {"storageSasToken": token})
    assert agent.run(ext_dir, "enable", 1).returncode == 0
    wait_for_state(agent, ext_dir, 1, "long", "Running")
    sender = peer.popen(["python3", "-c", SENDER, VM, str(RATE), str(SECONDS)])
    try:
        time.sleep(KILL_AFTER)
        (job_file,) = (ext_dir / "state" / "jobs").glob("*.json")
        os.kill(json.loads(job_file.read_text())["pid"], signal.SIGKILL)
        blob = azurite.read_blob("stream", "vm1/long.cap")
        local_bytes = Path(local).read_bytes()
    finally:
        sender.kill()
        sender.wait(10)
    assert not tshark_problems(blob), f"tshark: {tshark_problems(blob)}"
    found = numbers(blob)
    assert found == list(range(len(found))), "the blob misses packets before its last one"
    assert len(found) >= RATE * 20, \
        f"only {len(found)} packets in storage 45 s in: no commit by 30 s?"
    assert local_bytes[:len(blob)] == blob, "the blob is not what the file held at the commit"

    agent.run(ext_dir, "enable", 1)  # the agent restarts and re-runs enable
    recovered = wait_recovered(agent, ext_dir, "long")
    assert recovered["packetCaptureStatus"] == "Error", recovered
    assert recovered["packetCaptureError"] == ["AgentStopped"], recovered
    assert recovered["uploadedUrl"] == storage_path, "the URL shown has no SAS"
    final = azurite.read_blob("stream", "vm1/long.cap")
    assert final == Path(local).read_bytes(), "the blob is not the whole local file"
    assert not tshark_problems(final), f"tshark: {tshark_problems(final)}"
    everything = numbers(final)
    assert everything == list(range(len(everything))) and len(everything) > len(found), \
        f"after the restart: {len(everything)} packets, {len(found)} before"


def wait_recovered(agent, ext_dir, name: str, seq: int = 1, timeout: float = 60.0) -> dict:
    deadline, found = time.monotonic() + timeout, {}
    while time.monotonic() < deadline:
        found = substatus(agent, ext_dir, seq, name)
        if (found.get("streaming") or {}).get("state") == "recoveredAfterRestart":
            return found
        time.sleep(0.5)
    raise AssertionError(f"the enable did not upload what the capture left unsent: {found}")


def test_files_storage_refused_at_the_end_go_up_at_a_later_enable(capture_agent, ext_dir, lab,
                                                                  tmp_path):
    agent, (_, peer) = capture_agent, lab
    storage = Azurite(location=str(tmp_path / "azurite")).start()  # this test's own: stopped
    try:
        storage_path, token = storage.blob_sas_uri("late", "vm1/late.cap").split("?", 1)
        local = str(tmp_path / "captures" / "late.cap")
        agent.write_settings(ext_dir, 1, capture(
            "late", timeLimitInSeconds=3, interfaces=["cap0"],
            filters=[{"protocol": "UDP", "localPort": "5000"}],
            storageLocation={"storagePath": storage_path, "filePath": local}),
            {"storageSasToken": token})
        assert agent.run(ext_dir, "enable", 1).returncode == 0
        wait_for_state(agent, ext_dir, 1, "late", "Running")
        storage.stop()
        peer.run(["python3", "-c", SENDER, VM, "100", "1"], timeout=30)
        ended = wait_for_state(agent, ext_dir, 1, "late", "Error", timeout=90)
        assert ended["errorCode"] == 140, f"not an upload failure: {ended}"
        storage.start()
        agent.write_settings(ext_dir, 2, capture("nosuch", "stop"))
        agent.run(ext_dir, "enable", 2)  # any later enable
        recovered = wait_recovered(agent, ext_dir, "late", seq=2)
        assert recovered["uploadedUrl"] == storage_path, recovered
        blob = storage.read_blob("late", "vm1/late.cap")
        assert blob == Path(local).read_bytes() and len(numbers(blob)) == 100, \
            f"{len(numbers(blob))} packets in storage"
    finally:
        storage.stop()
