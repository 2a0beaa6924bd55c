"""A capture process stalled for 10 s (SIGSTOP) at 2,000 pps loses nothing on either backend:
the kernel rings hold 10 s of traffic at that rate, however empty each ring block is."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from capture_engine.interfaces import in_netns
from tests.capture_engine import helpers, traffic
from tests.capture_engine.conftest import ROOT

pytestmark = pytest.mark.root
RATE, SECONDS, PORT = 2000, 12, 7401
STALL = 10.0


def _cli(lab, backend: str, path: str) -> subprocess.Popen:
    argv = [sys.executable, "-m", "capture_engine", "--netns", lab.vm.name, "-i", lab.vm_if,
            "-w", path, "--backend", backend, "--json", "--time-limit", "60",
            "--filter", json.dumps({"protocol": "UDP", "localPort": str(PORT)})]
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    helpers.wait_packet_socket(proc, lab.vm.name)
    return proc


def _paced_send(lab, count: int, rate: int) -> None:
    """`count` 64-byte datagrams peer -> vm at `rate` per second (bounded in count and time)."""
    with in_netns(lab.peer.name):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        start = time.monotonic()
        for seq in range(count):
            ahead = start + seq / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
            sock.sendto(seq.to_bytes(4, "big") + bytes(60), (traffic.VM_V4[0], PORT))
            if time.monotonic() - start > SECONDS * 3:
                raise AssertionError(f"the sender fell far behind: {seq} sent")
    finally:
        sock.close()


def test_a_10_second_stall_at_2000_pps_loses_nothing(lab, tmp_path):
    procs = {backend: _cli(lab, backend, str(tmp_path / f"{backend}.cap"))
             for backend in ("rawsocket", "libpcap")}
    count = RATE * SECONDS
    sender = threading.Thread(target=_paced_send, args=(lab, count, RATE))
    try:
        sender.start()
        time.sleep(1.0)
        for proc in procs.values():
            os.kill(proc.pid, signal.SIGSTOP)
        time.sleep(STALL)
        for proc in procs.values():
            os.kill(proc.pid, signal.SIGCONT)
        sender.join(SECONDS * 4)
        time.sleep(1.0)
    finally:
        for proc in procs.values():
            os.kill(proc.pid, signal.SIGCONT)
        sender.join(SECONDS * 4)
        outputs = {backend: json.loads(helpers.stop_process(proc) or b"{}")
                   for backend, proc in procs.items()}
    for backend, status in outputs.items():
        assert status.get("packetsDropped") == 0, \
            f"{backend}: {status.get('packetsDropped')} packets dropped in a {STALL:g} s stall"
        assert status["packetsCaptured"] == count, f"{backend}: {status['packetsCaptured']} " \
            f"of {count} captured"
