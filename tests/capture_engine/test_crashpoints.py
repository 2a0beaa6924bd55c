"""The capture session's crash points: where they are reached, and a kill at a rotation."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from capture_engine.settings import parse_capture_settings
from plumbing.blobstore import BlobStore
from plumbing.crashpoints import ARM_VARIABLE, TRACE_VARIABLE, read_trace
from tests.capture_engine import helpers, traffic
from tests.capture_engine.conftest import ROOT
from tests.capture_engine.session_util import start_session

pytestmark = pytest.mark.root
# Ring files stream as they close (capture_engine/streaming.py): a rotation and the first
# upload happen in two threads, in either order.
BEFORE = ["capture.claimed", "capture.file_opened", "capture.stream.recorded"]
MEANWHILE = {"capture.rotated", "capture.stream.file_uploaded"}
AFTER = ["capture.file_closed", "capture.stream.done", "capture.pending_removed",
         "capture.finished"]


def test_a_ring_uploaded_from_pending_reaches_every_point_in_order(lab, tmp_path, azurite,
                                                                  monkeypatch):
    trace = str(tmp_path / "trace")
    monkeypatch.setenv(TRACE_VARIABLE, trace)
    container, token = azurite.container_sas_uri("captures").split("?", 1)
    path = f"{container}/vm1/points.cap"  # a ring uploads several blobs: a container SAS
    request = parse_capture_settings(
        {"name": "points", "continuousCapture": True, "interfaces": ["cap0"],
         "storageLocation": {"storagePath": path},
         "captureSettings": {"fileCount": 2, "fileSizeInBytes": 2000}},
        capture_root=str(tmp_path / "root"))
    running = start_session(lab, request, "rawsocket", blob_store=BlobStore(), sas_token=token)
    traffic.blast(lab, 60, 200, 7501, 0.001)
    running.stop.set()
    status = running.finish().querystatus()
    assert status["packetCaptureStatus"] == "Stopped" and status["uploadedCount"] >= 2, \
        status["errorMessage"]
    reached = [name for pid, name in read_trace(trace) if pid == os.getpid()
               and name != "capture.stream.retired_removed"]  # only if a file was mid-upload
    firsts = [name for n, name in enumerate(reached) if name not in reached[:n]]
    middle = firsts[len(BEFORE):len(firsts) - len(AFTER)]
    assert firsts[:len(BEFORE)] == BEFORE and set(middle) == MEANWHILE and \
        firsts[len(firsts) - len(AFTER):] == AFTER, f"points reached (first time each): {firsts}"


def test_a_kill_at_a_rotation_leaves_readable_ring_files(lab, tmp_path):
    base = tmp_path / "killed.cap"
    env = dict(os.environ, **{ARM_VARIABLE: "capture.rotated@3",
                              TRACE_VARIABLE: str(tmp_path / "trace")})
    proc = subprocess.Popen(
        [sys.executable, "-m", "capture_engine", "--netns", lab.vm.name, "-i", lab.vm_if,
         "-w", str(base), "--ring", "5", "--file-size", "2000", "--time-limit", "30", "--backend",
         "libpcap"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True)
    try:
        helpers.wait_packet_socket(proc, lab.vm.name)
        traffic.blast(lab, 200, 200, 7502, 0.001)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == -9, f"not killed at the crash point: {proc.returncode}"
    files = sorted(p for p in os.listdir(tmp_path) if p.startswith("killed_"))
    assert files == ["killed_00001.cap", "killed_00002.cap", "killed_00003.cap",
                     "killed_00004.cap"], files
    for name in files[:-1]:  # the newest was just opened: it may hold only its header
        assert helpers.read_pcap(str(tmp_path / name)), f"{name} holds no complete record"
