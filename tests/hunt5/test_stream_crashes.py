"""SIGKILL a streaming capture at each of its crash points: what is in storage is a valid
pcap, and the recovery the next enable runs sends the rest - no packet lost, none twice."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from typing import Dict, List

import dpkt
import pytest

from capture_engine.recovery import recover_uploads
from capture_engine.settings import parse_capture_settings
from plumbing.blobstore import BlobStore

pytestmark = pytest.mark.root
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SENDER = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(int(sys.argv[1])):
    s.sendto(i.to_bytes(4, "big") + bytes(496), ("10.199.71.1", 5000))
    time.sleep(0.004)
"""


def numbers(data: bytes) -> List[int]:
    return [int.from_bytes(bytes(dpkt.ethernet.Ethernet(frame).data.data.data)[:4], "big")
            for _, frame in dpkt.pcap.Reader(io.BytesIO(data))]


def tshark_ok(data: bytes) -> bool:
    read = subprocess.run(["tshark", "-r", "-"], input=data, capture_output=True, timeout=60)
    return read.returncode == 0


def _run_until_killed(lab, spec: dict, crash_at: str, tmp_path) -> None:
    vm, peer = lab
    env = {**os.environ, "HANDLER_CRASH_AT": crash_at,
           "HANDLER_CRASH_TRACE": str(tmp_path / "trace"), "PYTHONPATH": ROOT}
    child = subprocess.Popen([sys.executable, "-m", "tests.hunt5.crash_child", json.dumps(spec)],
                             env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(1.5)  # the capture is open
        sender = peer.popen([sys.executable, "-c", SENDER, "2000"])
        try:
            code = child.wait(30)
        finally:
            sender.kill()
            sender.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
    assert code == -9, f"{crash_at} was not reached: exit {code}: {child.stderr.read()[-800:]}"


def _settings(name: str, storage: str, **extra: object) -> dict:
    return {"name": name, "interfaces": ["cap0"], "timeLimitInSeconds": 60,
            "filters": [{"protocol": "UDP", "localPort": "5000"}],
            "storageLocation": {"storagePath": storage, **extra.pop("location", {})}, **extra}


@pytest.mark.parametrize("crash_at", ["capture.stream.recorded",
                                      "capture.stream.before_commit@4",
                                      "capture.stream.after_commit@3"])
def test_a_single_file_killed_at_each_point_is_valid_in_storage_and_recovers_whole(
        h11b_lab, azurite, tmp_path, crash_at):
    blob_name = f"one-{crash_at.split('.')[-1].replace('@', '-')}.cap"
    storage, token = azurite.blob_sas_uri("crashone", blob_name).split("?", 1)
    settings = _settings("one", storage, location={"filePath": "one.cap"})
    root = str(tmp_path / "root")
    spec = {"settings": settings, "root": root, "token": token, "commit_bytes": 16 * 1024,
            "netns": h11b_lab[0].name}
    _run_until_killed(h11b_lab, spec, crash_at, tmp_path)
    blob = azurite.service().get_blob_client("crashone", blob_name)
    before = azurite.read_blob("crashone", blob_name) if blob.exists() else b""
    with open(os.path.join(root, "one.cap"), "rb") as local:
        local_bytes = local.read()
    if before:
        assert tshark_ok(before), "the blob left by the kill is not a valid pcap"
        assert local_bytes.startswith(before), "the blob is not what the file held"
    recovered = recover_uploads(parse_capture_settings(settings, capture_root=root),
                                BlobStore(timeout=5), token)
    assert recovered.error is None and recovered.uploaded, recovered
    after = azurite.read_blob("crashone", blob_name)
    found = numbers(after)
    assert tshark_ok(after) and len(found) >= len(numbers(before) if before else []), len(found)
    assert found == list(range(found[0], found[0] + len(found))) if found else True, \
        "lost or doubled packets"
    with open(os.path.join(root, "one.cap"), "rb") as local:
        assert after == local.read(), "the blob is not the whole (cut) local file"


@pytest.mark.parametrize("crash_at", ["capture.stream.file_uploaded@3",
                                      "capture.stream.retired_removed@2"])
def test_a_ring_killed_at_each_point_recovers_every_file_once(h11b_lab, azurite, tmp_path,
                                                              crash_at):
    container, token = azurite.container_sas_uri(
        f"crashring{crash_at[-1]}").split("?", 1)
    settings = _settings("ring", f"{container}/vm/r.cap", continuousCapture=True,
                         location={"localPath": "r.cap"},
                         captureSettings={"fileCount": 2, "fileSizeInBytes": 20_000})
    root = str(tmp_path / "root")
    spec = {"settings": settings, "root": root, "token": token, "commit_bytes": 16 * 1024,
            "netns": h11b_lab[0].name}
    _run_until_killed(h11b_lab, spec, crash_at, tmp_path)
    recovered = recover_uploads(parse_capture_settings(settings, capture_root=root),
                                BlobStore(timeout=5), token)
    assert recovered.error is None, recovered
    client = azurite.service().get_container_client(f"crashring{crash_at[-1]}")
    data: Dict[str, bytes] = {b.name: client.download_blob(b.name).readall()
                              for b in client.list_blobs()}
    assert all(tshark_ok(body) for body in data.values()), "a blob is not a valid pcap"
    found = sorted(n for body in data.values() for n in numbers(body))
    assert len(found) == len(set(found)), "a packet is in storage twice"
    assert found == list(range(found[0], found[-1] + 1)), \
        f"packets missing from storage: {sorted(set(range(found[0], found[-1])) - set(found))}"
    local = sorted(n for name in os.listdir(root) if name.startswith("r_")
                   for n in numbers(open(os.path.join(root, name), "rb").read()))
    assert set(local) <= set(found), "a local file's packets are not in storage"
