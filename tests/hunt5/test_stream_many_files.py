"""Thousands of ring files waiting for storage: the status stays within its size, counts
every file once, and naming them costs one pass over the waiting files."""
from __future__ import annotations

import dataclasses
import json

from capture_engine.output import OutputPlan, Recorder
from capture_engine.pcapfile import FdSink
from capture_engine.result import STATUS_BYTES, CaptureResult
from capture_engine.settings import CaptureRequest, RingSettings
from capture_engine.streaming import Streamer
from capture_engine.streamstate import LOCAL, StreamTuning
from devtools.azurite import free_port
from plumbing.blobstore import DEFAULT_POLICY, BlobStore
from plumbing.clock import ManualClock
from tests.capture_engine.streamkit import records

FILES = 2000


def test_two_thousand_waiting_ring_files_keep_the_status_small_and_counted(tmp_path):
    local = str(tmp_path / "r.cap")
    request = CaptureRequest(
        name="many", storage_path=f"http://127.0.0.1:{free_port()}/devstoreaccount1/c/r.cap",
        local_path=local, capture_root=str(tmp_path), ring=RingSettings(3, 1100))
    recorder = Recorder(OutputPlan(local, 65535, 1100, 3), FdSink())
    recorder.start()
    store = BlobStore(timeout=1, policy=dataclasses.replace(DEFAULT_POLICY, attempts=1))
    tuning = StreamTuning(floor_bytes=0, floor_fraction=0.0, retry_seconds=3600,
                          retry_max_seconds=3600)
    streamer = Streamer(request, recorder, store, None, ManualClock(), tuning)
    streamer.start()
    try:
        for n in range(FILES):  # one 1,040-byte file per record: each fills a ring file
            recorder.accept_batch(records(n, 1), 1)
        fields = streamer.fields()
    finally:
        streamer.abandon()
        recorder.close()
    stream = fields["stream"]
    counted = sum(stream["fileStates"].values())
    assert counted == recorder.seq, f"{counted} files counted, {recorder.seq} written"
    assert stream["fileStates"][LOCAL] >= FILES - 2, stream["fileStates"]
    status = CaptureResult(name="many", **{k: v for k, v in fields.items()}).querystatus()
    assert len(json.dumps(status)) <= STATUS_BYTES, len(json.dumps(status))
