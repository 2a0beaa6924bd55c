"""Upload to storagePath through the shared BlobStore, against a real Azurite."""
from __future__ import annotations

import json
import os

import pytest

from capture_engine.settings import parse_capture_settings
from plumbing.blobstore import BlobStore
from tests.capture_engine import traffic
from tests.capture_engine.session_util import start_session

pytestmark = pytest.mark.root


def _capture(lab, tmp_path, storage_path, token, **location):
    request = parse_capture_settings(
        {"name": "upcap", "storageLocation": {"storagePath": storage_path, **location}},
        capture_root=str(tmp_path))
    running = start_session(lab, request, "libpcap", blob_store=BlobStore(chunk_size=4096),
                            sas_token=token)
    traffic.generate(lab)
    running.stop.set()
    return running.finish(), running.progress


def test_upload_sends_the_file_and_reports_progress_without_the_sas(lab, tmp_path, azurite):
    path, token = azurite.blob_sas_uri("captures", "vm1/upcap.cap").split("?", 1)
    result, progress = _capture(lab, tmp_path, path, token)
    status = result.querystatus()
    assert status["packetCaptureStatus"] == "Stopped" and status["uploadedUrl"] == path, status
    blob = azurite.read_blob("captures", "vm1/upcap.cap")
    assert len(blob) == status["bytesWritten"] and blob[:4] == b"\xd4\xc3\xb2\xa1", len(blob)
    assert status["uploadProgress"] == {"bytes": len(blob), "total": len(blob)}, status
    assert status["localFileCount"] == 0 and status["localPath"] is None, \
        "the pending local copy should go once uploaded"
    assert not os.listdir(tmp_path / ".pending"), "pending file left behind"
    everything = json.dumps(progress + [status])
    assert token.split("sig=")[1][:10] not in everything, "the SAS signature leaked"


def test_upload_keeps_the_local_file_when_it_also_has_a_file_path(lab, tmp_path, azurite):
    path, token = azurite.blob_sas_uri("captures", "vm1/both.cap").split("?", 1)
    result, _ = _capture(lab, tmp_path, path, token, filePath="both.cap")
    assert result.uploaded_urls == (path,) and result.local_path == str(tmp_path / "both.cap")
    with open(result.local_path, "rb") as local:
        assert azurite.read_blob("captures", "vm1/both.cap") == local.read()
