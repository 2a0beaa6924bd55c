"""A single file's state in the status follows its blob: `uploading` while it grows in
storage, `uploaded` once the last commit holds all of it - never `local` once sent."""
from __future__ import annotations

from capture_engine.streamstate import LOCAL, UPLOADED, UPLOADING
from plumbing.blobstore import BlobStore
from tests.capture_engine.streamkit import records, stream_single_file, wait_for


def test_a_single_files_state_is_uploading_then_uploaded(tmp_path, azurite):
    path, token = azurite.blob_sas_uri("states", "one.cap").split("?", 1)
    local = str(tmp_path / "one.cap")
    recorder, streamer, clock = stream_single_file(
        path, token, local, BlobStore(timeout=10), commit_bytes=16 * 1024)
    try:
        before = streamer.fields()["stream"]["fileStates"]
        recorder.accept_batch(records(0, 30), 30)
        wait_for("a commit", lambda: streamer.record.committed > 0)
        during = streamer.fields()["stream"]["fileStates"]
        running = streamer.fields()["stream"]["state"]
    finally:
        recorder.close()
        streamer.finish()
    after = streamer.fields()["stream"]
    assert before[LOCAL] == 1, before
    assert during[UPLOADING] == 1 and during[LOCAL] == 0, f"while streaming: {during}"
    assert after["fileStates"][UPLOADED] == 1 and after["fileStates"][LOCAL] == 0, \
        f"after the last commit: {after['fileStates']}"
    assert after["files"][-1]["state"] == UPLOADED, after["files"]
    # The stream's own state says it is over: not still "streaming" in a terminal status.
    assert running == "streaming" and after["state"] == "complete", (running, after["state"])
