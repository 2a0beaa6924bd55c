"""Capture files are never silently lost: removed roots, kept files, delete after upload."""
from __future__ import annotations

import json
import os
import shutil
import time

import pytest

from capture_engine.output import OutputPlan, Recorder
from capture_engine.pcapfile import FdSink
from capture_engine.session import delete_capture_files
from capture_engine.settings import parse_capture_settings
from plumbing.blobstore import BlobStore
from tests.capture_engine import helpers, traffic
from tests.capture_engine.session_util import start_session

BACKENDS = ["libpcap", "rawsocket"]


@pytest.mark.root
@pytest.mark.parametrize("backend", BACKENDS)
def test_capture_root_removed_mid_capture_ends_with_a_coded_error_and_no_false_path(
        lab, tmp_path, backend):
    root = tmp_path / "root"
    root.mkdir()
    request = parse_capture_settings(
        {"name": "lost", "storageLocation": {"filePath": "lost.cap"}, "interfaces": ["cap0"],
         "timeLimitInSeconds": 10}, capture_root=str(root))
    running = start_session(lab, request, backend)
    try:
        traffic.blast(lab, 100, 200, 7201, 0.001)
        time.sleep(0.5)
        shutil.rmtree(root)
        traffic.blast(lab, 100, 200, 7201, 0.001)
        result = running.finish(30)
    finally:
        running.stop.set()
    status = result.querystatus()
    assert status["packetCaptureStatus"] == "Error", status
    assert status["stopReason"] == "LocalFileFailed", status
    assert status["errorCode"] == 131 and status["packetCaptureError"] == ["LocalFileFailed"], \
        status
    message = status["errorMessage"]
    assert "lost" in message and "removed" in message, message
    assert "kept" not in message, f"claims the packets are kept: {message}"
    for key in ("localPath", "firstLocalFile"):
        assert status.get(key) is None or os.path.exists(status[key]), \
            f"{key} names a file that does not exist: {status}"
    assert status["elapsedSeconds"] < 8, f"the loss was noticed only at the limit: {status}"


@pytest.mark.root
def test_a_new_start_never_overwrites_a_kept_capture(lab, tmp_path):
    kept = tmp_path / "same.cap"
    kept.write_bytes(b"an earlier capture kept after its upload failed")
    request = parse_capture_settings(
        {"name": "same", "storageLocation": {"filePath": "same.cap"}, "interfaces": ["cap0"]},
        capture_root=str(tmp_path))
    running = start_session(lab, request, "libpcap")
    traffic.blast(lab, 20, 100, 7202, 0.001)
    time.sleep(0.3)
    running.stop.set()
    result = running.finish()
    assert kept.read_bytes() == b"an earlier capture kept after its upload failed", \
        "the kept capture was overwritten"
    status = result.querystatus()
    assert status["packetCaptureStatus"] == "Stopped", status
    assert status["localPath"] == str(tmp_path / "same~2.cap"), status
    assert status["requestedLocalPath"] == str(kept), status
    assert len(helpers.read_pcap(status["localPath"])) == status["packetsCaptured"] >= 20
    assert delete_capture_files(request) == [status["localPath"]]
    assert kept.exists(), "delete removed a file this capture did not write"


def test_a_new_ring_never_overwrites_the_files_of_a_kept_ring(tmp_path):
    old = [tmp_path / f"r_{n:05d}.cap" for n in (7, 8)]
    for path in old:
        path.write_bytes(b"old ring file")
    plan = OutputPlan(str(tmp_path / "r.cap"), 65535, 1000, ring_files=2)
    recorder = Recorder(plan, FdSink())
    recorder.start()
    recorder.close()
    assert all(path.read_bytes() == b"old ring file" for path in old), "old ring overwritten"
    assert list(recorder.files) == [str(tmp_path / "r~2_00001.cap")], recorder.files


def test_delete_after_the_pending_file_was_uploaded_and_removed_succeeds(tmp_path):
    request = parse_capture_settings(
        {"name": "uploaded", "action": "delete",
         "storageLocation": {"storagePath": "https://acct.blob.core.windows.net/c/u.cap"}},
        capture_root=str(tmp_path))
    assert delete_capture_files(request) == []


@pytest.mark.root
def test_delete_ends_the_life_of_an_uploaded_storage_only_capture(lab, tmp_path, azurite):
    path, token = azurite.blob_sas_uri("captures", "vm1/gone.cap").split("?", 1)
    request = parse_capture_settings(
        {"name": "gone", "storageLocation": {"storagePath": path}, "interfaces": ["cap0"]},
        capture_root=str(tmp_path))
    running = start_session(lab, request, "rawsocket", blob_store=BlobStore(), sas_token=token)
    traffic.blast(lab, 10, 100, 7203, 0.001)
    running.stop.set()
    status = running.finish().querystatus()
    assert status["packetCaptureStatus"] == "Stopped" and status["uploadedUrl"] == path, \
        json.dumps(status)
    assert delete_capture_files(request) == [], "nothing local is left to delete"
    assert azurite.read_blob("captures", "vm1/gone.cap")[:4] == b"\xd4\xc3\xb2\xa1", \
        "delete never touches the blob"
