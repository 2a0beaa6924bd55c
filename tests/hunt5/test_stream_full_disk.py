"""A streamed single file that fills its disk: DiskFull, and the last complete record still
sent and said to be sent - the stream record that cannot be written on the full disk is not
taken for storage being unreachable."""
from __future__ import annotations

import os

import pytest

from devtools.loopfs import LoopFilesystems
from plumbing.blobstore import BlobStore
from tests.capture_engine.streamkit import records, stream_single_file, wait_for

pytestmark = pytest.mark.root


def test_a_file_that_fills_the_disk_is_still_sent_and_said_sent(tmp_path, azurite):
    path, token = azurite.blob_sas_uri("full", "full.cap").split("?", 1)
    with LoopFilesystems(tmp_path) as filesystems:
        mount = filesystems.make("ext4", size_mb=8).mountpoint
        local = os.path.join(mount, "full.cap")
        recorder, streamer, clock = stream_single_file(
            path, token, local, BlobStore(timeout=10), total_bytes=100_000_000,
            commit_bytes=1024 * 1024, retry_seconds=0.2, retry_max_seconds=0.5)
        try:
            batch = 0
            while recorder.error is None and batch < 100:  # 100 MB through an 8 MB disk
                recorder.accept_batch(records(batch * 1000, 1000), 1000)
                batch += 1
            _fill(os.path.join(mount, "other-process.log"))  # not a byte left, for anyone
            clock.sleep(31)
            wait_for("the streamer caught up", lambda: streamer.record.committed ==
                     recorder.complete_offset or streamer.storage_problem is not None)
            problem_while_running = streamer.storage_problem
        finally:
            recorder.close()
            streamer.finish()
        with open(local, "rb") as source:
            kept = source.read()
    assert recorder.error is not None and recorder.error.disk_full, recorder.error
    assert problem_while_running is None, f"said storage was unreachable: " \
                                          f"{problem_while_running}"
    assert streamer.error is None and streamer.storage_problem is None, \
        f"the end said nothing was sent: {streamer.storage_problem}"
    assert azurite.read_blob("full", "full.cap") == kept, "storage lacks the kept records"


def _fill(path: str) -> None:
    with open(path, "wb") as out:
        try:
            while True:
                out.write(bytes(4096))
                out.flush()
        except OSError:
            pass
