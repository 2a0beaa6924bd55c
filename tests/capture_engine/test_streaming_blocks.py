"""The streamer on its own: a growing file committed at record boundaries in few blocks (time
driven by the injected clock), and the free-space floor on a small loop filesystem."""
from __future__ import annotations

import dataclasses
import json
import os
import time

import pytest

from capture_engine.output import OutputPlan, Recorder
from capture_engine.pcapfile import FdSink
from capture_engine.result import STATUS_BYTES, CaptureResult
from capture_engine.settings import CaptureRequest, RingSettings
from capture_engine.streaming import Streamer
from capture_engine.streamstate import DROPPED, Journal, StreamTuning, free_bytes
from devtools.azurite import free_port
from devtools.loopfs import LoopFilesystems
from devtools.stallproxy import StallProxy
from plumbing.blobstore import (
    DEFAULT_POLICY,
    STALL_FACTOR,
    WALL_MARGIN,
    BlobError,
    BlobErrorKind,
    BlobStore,
)
from plumbing.clock import ManualClock
from tests.capture_engine.streamkit import records, stream_single_file, wait_for


def test_a_growing_file_is_committed_at_record_boundaries_in_few_blocks(tmp_path, azurite):
    path, token = azurite.blob_sas_uri("blocks", "grow.cap").split("?", 1)
    blob = azurite.service().get_blob_client("blocks", "grow.cap")
    local = str(tmp_path / "grow.cap")
    recorder, streamer, clock = stream_single_file(
        path, token, local, BlobStore(), commit_bytes=64 * 1024)

    def stored() -> bytes:
        return azurite.read_blob("blocks", "grow.cap") if blob.exists() else b""

    def whole_file_stored() -> bool:
        with open(local, "rb") as source:
            return stored() == source.read()
    try:
        recorder.accept_batch(records(0, 10), 10)
        time.sleep(1.5)
        assert not blob.exists(), "committed before 30 s or 64 KiB"
        clock.sleep(30)
        wait_for("a commit 30 s (on the clock) after the start", whole_file_stored)
        recorder.accept_batch(records(10, 100), 100)  # past 64 KiB: no need to wait 30 s
        wait_for("a commit once 64 KiB were new", whole_file_stored)
        for round_ in range(4):  # small commits re-stage the short last block
            recorder.accept_batch(records(110 + 5 * round_, 5), 5)
            clock.sleep(30)
            wait_for(f"commit {round_ + 3}", whole_file_stored)
        size = os.path.getsize(local)
        committed, _ = blob.get_block_list("committed")
        assert len(committed) == -(-size // (64 * 1024)), \
            f"{len(committed)} committed blocks for {size} bytes in 64 KiB blocks"
    finally:
        streamer.finish()
        recorder.close()
    assert streamer.error is None and whole_file_stored(), "the final commit failed"
    assert Journal(str(tmp_path)).records("grow") == [], "a finished stream left its record"


@pytest.mark.root
def test_storage_down_never_fills_the_disk_the_oldest_waiting_file_goes(tmp_path):
    with LoopFilesystems(tmp_path) as filesystems:
        mount = filesystems.make("ext4", size_mb=32).mountpoint
        local = os.path.join(mount, "ring.cap")
        request = CaptureRequest(  # storage that refuses every connection
            name="floor", storage_path=f"http://127.0.0.1:{free_port()}/devstoreaccount1/c/r.cap",
            local_path=local, capture_root=mount,
            ring=RingSettings(file_count=3, file_size=1_000_000))
        recorder = Recorder(OutputPlan(local, 65535, 1_000_000, 3), FdSink())
        recorder.start()
        floor = 12 * 1024 * 1024
        tuning = StreamTuning(floor_bytes=floor, floor_fraction=0.0, retry_seconds=0.2)
        store = BlobStore(timeout=1, policy=dataclasses.replace(DEFAULT_POLICY, attempts=1))
        streamer = Streamer(request, recorder, store, None, ManualClock(), tuning)
        streamer.start()
        lowest = free_bytes(mount)
        try:
            for batch in range(40):  # 40 MB through a 32 MB filesystem
                recorder.accept_batch(records(batch * 1000, 1000), 1000)
                lowest = min(lowest, free_bytes(mount))
            status = streamer.fields()["stream"]
        finally:
            streamer.abandon()
            recorder.close()
        left = sorted(name for name in os.listdir(mount) if name.startswith("ring_"))
    assert recorder.error is None, f"the disk filled: {recorder.error}"
    assert lowest >= floor - 1_100_000, f"free space fell to {lowest} (floor {floor})"
    assert status["fileStates"][DROPPED] > 0, status
    assert any("dropped" in note for note in status["notes"]), status
    seqs = [int(name[5:10]) for name in left]
    assert seqs == list(range(seqs[0], seqs[-1] + 1)) and seqs[-1] == recorder.seq, \
        f"not the oldest files dropped: {left}"
    assert len(left) + status["fileStates"][DROPPED] == recorder.seq, \
        f"{recorder.seq} files written, {len(left)} kept, {status['fileStates']} dropped"


def test_staging_and_committing_end_when_storage_hangs_and_never_show_the_sas(azurite):
    uri = azurite.blob_sas_uri("blocks", "hang.cap")
    signature = uri.split("sig=")[1].split("&")[0]
    store = BlobStore(timeout=1, policy=dataclasses.replace(DEFAULT_POLICY, attempts=1))
    with StallProxy("127.0.0.1", azurite.port) as proxy:
        proxy.stall()
        for call in (lambda: store.stage_block(proxy.rewrite(uri), "000000", bytes(100_000)),
                     lambda: store.commit_block_list(proxy.rewrite(uri), ["000000"])):
            started = time.monotonic()
            with pytest.raises(BlobError) as failed:
                call()
            took = time.monotonic() - started
            assert failed.value.kind is BlobErrorKind.TIMEOUT, failed.value
            assert took < STALL_FACTOR * 1 + WALL_MARGIN + 5, f"a hung request took {took:.0f}s"
            assert signature not in str(failed.value), "the SAS signature leaked"


def test_the_streamed_files_never_push_the_status_past_its_size():
    long = "/var/captures/" + "d" * 900 + "/c.cap"
    files = [{"file": long[:240], "state": "local", "blob": "https://a/" + "b" * 230}
             for _ in range(6)]  # at most what Streamer.fields() shows, each text at its cut
    stream = {"state": "storageUnreachable", "files": files, "storageProblem": "p" * 240,
              "notes": ["n" * 240] * 3, "fileStates": {"local": 6, "uploading": 0,
                                                       "uploaded": 0, "dropped": 0}}
    result = CaptureResult(name="big", local_files=(long,) * 3, uploaded_urls=(long, long),
                           error_message="e" * 2000, stream=stream)
    status = result.querystatus()
    assert len(json.dumps(status)) <= STATUS_BYTES, len(json.dumps(status))
    assert status["streaming"]["files"], "no file state left at all"
    assert len(result.stream["files"]) == 6, "the result itself was changed"
