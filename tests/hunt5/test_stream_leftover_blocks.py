"""A storagePath whose blob holds blocks an interrupted upload staged and never committed
(an earlier version's end-of-session upload, another tool: ids of another length, kept by
storage for a week). Storage refuses any block whose id has another length: the capture
must still stream, and a recovery still send."""
from __future__ import annotations

import os

from capture_engine.pcapfile import file_header
from capture_engine.recovery import recover_uploads
from capture_engine.settings import CaptureRequest
from capture_engine.streamstate import Journal, StreamRecord
from plumbing.blobstore import BlobStore
from tests.capture_engine.streamkit import records, stream_single_file, wait_for


def _leftover(azurite, blob_name: str) -> None:
    client = azurite.service().get_blob_client("leftover", blob_name)
    client.stage_block("MDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDA=", b"half an old upload")


def test_a_capture_streams_over_blocks_an_interrupted_upload_left(tmp_path, azurite):
    path, token = azurite.blob_sas_uri("leftover", "stream.cap").split("?", 1)
    _leftover(azurite, "stream.cap")
    local = str(tmp_path / "stream.cap")
    recorder, streamer, clock = stream_single_file(
        path, token, local, BlobStore(timeout=10), commit_bytes=16 * 1024, retry_seconds=0.2,
        retry_max_seconds=0.5)
    try:
        recorder.accept_batch(records(0, 30), 30)
        wait_for("a commit or a problem", lambda: streamer.record.committed > 0 or
                 streamer.storage_problem is not None)
    finally:
        recorder.close()
        streamer.finish()
    assert streamer.error is None and streamer.storage_problem is None, \
        streamer.storage_problem or streamer.error
    with open(local, "rb") as source:
        assert azurite.read_blob("leftover", "stream.cap") == source.read()


def test_a_recovery_sends_over_blocks_an_interrupted_upload_left(tmp_path, azurite):
    path, token = azurite.blob_sas_uri("leftover", "recover.cap").split("?", 1)
    _leftover(azurite, "recover.cap")
    local = str(tmp_path / "recover.cap")
    whole = file_header(65535) + records(0, 20)
    with open(local, "wb") as out:
        out.write(whole)
    Journal(str(tmp_path)).save(StreamRecord("rec", os.path.abspath(local), False, False))
    request = CaptureRequest(name="rec", storage_path=path, file_path=local,
                             capture_root=str(tmp_path))
    recovered = recover_uploads(request, BlobStore(timeout=10), token)
    assert recovered.error is None, recovered.error
    assert azurite.read_blob("leftover", "recover.cap") == whole
