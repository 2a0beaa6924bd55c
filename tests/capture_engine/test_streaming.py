"""A ring streamed to storage as it rotates: each file in Azurite within seconds of closing;
with storage down, files wait locally and go up when it returns - none lost, none twice."""
from __future__ import annotations

import dataclasses
import io
import json
import os
import socket
import subprocess
import threading
import time
from typing import Dict, List

import dpkt
import pytest

from capture_engine.interfaces import in_netns
from capture_engine.settings import parse_capture_settings
from capture_engine.streamstate import StreamTuning
from devtools.azurite import Azurite
from plumbing.blobstore import DEFAULT_POLICY, BlobStore
from tests.capture_engine.session_util import start_session

pytestmark = pytest.mark.root

PORT, PAYLOAD = 7777, 1000
FILE_BYTES, FILES = 200_000, 5
FAST = StreamTuning(floor_bytes=0, floor_fraction=0.0, retry_seconds=0.5,
                    retry_max_seconds=1.0)


class Sender:
    """Numbered UDP datagrams peer -> vm, one every `gap` seconds, at most `limit` of them."""

    def __init__(self, lab, gap: float = 0.005, limit: int = 6000) -> None:
        with in_netns(lab.peer.name):
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with in_netns(lab.vm.name):
            self.sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sink.bind(("10.199.1.1", PORT))  # no ICMP unreachable; never read
        self.gap, self.limit, self.sent = gap, limit, 0
        self.halt = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + 60
        while not self.halt.is_set() and self.sent < self.limit and \
                time.monotonic() < deadline:
            body = self.sent.to_bytes(4, "big") + bytes(PAYLOAD - 4)
            self.sock.sendto(body, ("10.199.1.1", PORT))
            self.sent += 1
            time.sleep(self.gap)

    def stop(self) -> None:
        self.halt.set()
        self.thread.join(10)
        self.sock.close()
        self.sink.close()


def _numbers(data: bytes) -> List[int]:
    found = []
    for _, frame in dpkt.pcap.Reader(io.BytesIO(data)):
        udp = dpkt.ethernet.Ethernet(frame).data.data
        found.append(int.from_bytes(bytes(udp.data)[:4], "big"))
    return found


def _blobs(azurite: Azurite) -> Dict[str, float]:
    from azure.storage.blob import BlobServiceClient

    try:  # no retries: while storage is down, the watch goes on
        service = BlobServiceClient.from_connection_string(azurite.connection_string,
                                                           retry_total=0)
        container = service.get_container_client("ring")
        return {b.name: time.monotonic() for b in container.list_blobs(timeout=2)}
    except Exception:  # noqa: BLE001 - storage is down on purpose for a while
        return {}


def test_ring_files_stream_as_they_close_and_wait_while_storage_is_down(lab, tmp_path):
    azurite = Azurite(location=str(tmp_path / "azurite")).start()
    sender = Sender(lab)
    try:
        token = azurite.container_sas_uri("ring").split("?", 1)[1]  # a ring writes many blobs
        path = f"{azurite.account_url}/ring/vm/r.cap"
        request = parse_capture_settings(
            {"name": "ringstream", "continuousCapture": True, "interfaces": ["cap0"],
             "filters": [{"protocol": "UDP", "localPort": str(PORT)}],
             "storageLocation": {"localPath": "r.cap", "storagePath": path},
             "captureSettings": {"fileCount": FILES, "fileSizeInBytes": FILE_BYTES}},
            capture_root=str(tmp_path / "cap"))
        store = BlobStore(timeout=5, policy=dataclasses.replace(DEFAULT_POLICY, attempts=2))
        running = start_session(lab, request, "rawsocket", blob_store=store, sas_token=token,
                                progress_interval=0.5, stream_tuning=FAST)
        sender.thread.start()
        closed, seen, _ = _watch(tmp_path / "cap", azurite, 6.0)
        up_until = time.monotonic()
        azurite.stop()  # storage down: the capture goes on, files wait
        _, _, most_down = _watch(tmp_path / "cap", azurite, 7.0)
        azurite.start()
        _watch(tmp_path / "cap", azurite, 4.0)
        sender.halt.set()
        time.sleep(1)
        running.stop.set()
        result = running.finish(timeout=60)
    finally:
        sender.stop()
        azurite.stop()
    _check_latency(closed, seen, up_until)
    assert most_down > FILES, f"with storage down, only {most_down} files were kept locally"
    assert any((s.get("streaming") or {}).get("state") == "storageUnreachable"
               for s in running.progress), "the status never said storage was unreachable"
    _check_complete(azurite, tmp_path / "azurite", result, sender)
    everything = json.dumps(running.progress + [result.querystatus()])
    assert token.split("sig=")[1].split("&")[0] not in everything, "the SAS signature leaked"


def _watch(folder, azurite: Azurite, seconds: float):
    """Poll: when each ring file was closed (the next one appeared) and each blob appeared;
    the most ring files on disk at once."""
    closed: Dict[int, float] = {}
    seen: Dict[str, float] = {}
    most, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        local = sorted(n for n in os.listdir(folder) if n.startswith("r_"))
        most = max(most, len(local))
        if local:
            newest = int(local[-1][2:7])
            for seq in range(1, newest):
                closed.setdefault(seq, time.monotonic())
        for name, when in _blobs(azurite).items():
            seen.setdefault(name, when)
        time.sleep(0.1)
    return closed, seen, most


def _check_latency(closed: Dict[int, float], seen: Dict[str, float], up_until: float) -> None:
    """Every file closed while storage was up (and not in its last second) was in storage
    within 5 s."""
    checked = {seq: round(seen.get(f"vm/r_{seq:05d}.cap", float("inf")) - when, 1)
               for seq, when in closed.items() if when < up_until - 1.0}
    assert checked, f"no ring file closed while storage was up: {closed}"
    assert all(lag <= 5.0 for lag in checked.values()), \
        f"ring files not in storage within 5 s of closing (seconds late): {checked}"


def _check_complete(azurite: Azurite, location, result, sender: Sender) -> None:
    azurite = Azurite(location=str(location), port=azurite.port).start()
    try:
        container = azurite.service().get_container_client("ring")
        names = sorted(b.name for b in container.list_blobs())
        data = {name: azurite.read_blob("ring", name) for name in names}
    finally:
        azurite.stop()
    expected = [f"vm/r_{seq:05d}.cap" for seq in range(1, len(names) + 1)]
    assert names == expected and len(names) > 2 * FILES, f"blobs: {names}"
    numbers = [n for name in names for n in _numbers(data[name])]
    assert len(numbers) == len(set(numbers)), "a packet is in storage twice"
    assert len(numbers) == result.packets_captured, \
        f"{len(numbers)} packets in storage, {result.packets_captured} captured"
    assert sorted(numbers) == list(range(sender.sent)) or result.packets_dropped, \
        f"storage lacks packets: {sorted(set(range(sender.sent)) - set(numbers))[:10]}"
    tshark = subprocess.run(["tshark", "-r", "-"], input=data[names[-1]], capture_output=True,
                            timeout=60)
    assert tshark.returncode == 0, tshark.stderr
    status = result.querystatus()
    assert status["uploadedCount"] == len(names), status
    states = status["streaming"]["fileStates"]
    assert states["uploaded"] == FILES and states["local"] == 0 and states["dropped"] == 0, \
        status["streaming"]
