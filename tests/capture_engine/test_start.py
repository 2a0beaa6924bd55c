"""Starting a capture: nothing from before captureStartTime, a refused kernel filter is an
error (never a silent copy of every packet to user space), a failed start cleans up once."""
from __future__ import annotations

import logging
import threading
import time

import pytest

from capture_engine.settings import parse_capture_settings
from tests.capture_engine import helpers, traffic
from tests.capture_engine.session_util import start_session

pytestmark = pytest.mark.root
BACKENDS = ["libpcap", "rawsocket"]
# 60 separate ports: a program far over the 1,536 bytes of optmem_max the fixture sets.
# Ports two apart: the compiler merges adjacent ports into one range, which would fit.
BIG_FILTER = [{"protocol": "UDP", "localPort": ";".join(str(5000 + 2 * n) for n in range(60))}]


@pytest.fixture
def small_optmem(lab):
    """net.core.optmem_max is per network namespace: lower it in the capture namespace only."""
    key = "net.core.optmem_max"
    before = lab.vm.run(["sysctl", "-n", key]).stdout.strip()
    lab.vm.run(["sysctl", "-q", "-w", f"{key}=1536"])
    try:
        yield
    finally:
        lab.vm.run(["sysctl", "-q", "-w", f"{key}={before}"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_packet_is_stamped_before_capture_start(lab, tmp_path, backend):
    request = parse_capture_settings(
        {"name": "early", "storageLocation": {"filePath": "early.cap"}, "interfaces": ["cap0"],
         "filters": [{"protocol": "UDP", "localPort": "7301"}]}, capture_root=str(tmp_path))
    enough = threading.Event()

    def send() -> None:  # from before the start until after it, whatever the start's speed
        for _ in range(60):  # bounded: 60,000 datagrams at most
            traffic.blast(lab, 1000, 64, 7301)
            if enough.is_set():
                return
    sender = threading.Thread(target=send)
    sender.start()
    try:
        time.sleep(0.1)
        running = start_session(lab, request, backend)
        time.sleep(0.3)
        enough.set()
        sender.join(30)
        running.stop.set()
        result = running.finish()
    finally:
        enough.set()
        sender.join(30)
    records = helpers.read_pcap(result.local_path)
    assert records, "nothing captured: the test proves nothing"
    start_us = int(round(result.capture_start_time.timestamp() * 1e6))
    early = [r.ts_us - start_us for r in records if r.ts_us < start_us]
    assert not early, f"{len(early)} packets stamped before captureStartTime " \
        f"(by up to {-min(early)} µs)"


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_kernel_that_refuses_the_filter_ends_in_a_coded_error(lab, tmp_path, backend,
                                                                small_optmem):
    status = _start_big_filter(lab, tmp_path, backend)
    assert status["packetCaptureStatus"] == "Error", status
    assert status["errorCode"] == 122 and status["packetCaptureError"] == ["CaptureFailed"], \
        status
    assert "optmem_max" in status["errorMessage"], status["errorMessage"]


def test_a_failed_start_closes_the_backend_once(lab, tmp_path, small_optmem, caplog):
    with caplog.at_level(logging.DEBUG, logger="capture_engine"):
        status = _start_big_filter(lab, tmp_path, "rawsocket")
    assert status["packetCaptureStatus"] == "Error", status
    noisy = [r for r in caplog.records if r.exc_info or "Bad file descriptor" in r.getMessage()]
    assert not noisy, f"a failed start logged a traceback: {noisy[0].getMessage()}"


def _start_big_filter(lab, tmp_path, backend: str) -> dict:
    request = parse_capture_settings(
        {"name": "optmem", "storageLocation": {"filePath": "optmem.cap"}, "interfaces": ["cap0"],
         "filters": BIG_FILTER}, capture_root=str(tmp_path))
    running = start_session(lab, request, backend)
    traffic.blast(lab, 5, 64, 5001, 0.001)
    running.stop.set()
    return running.finish().querystatus()
