"""A single file's blob deleted or overwritten by someone else while the capture streams to
it: the next commit puts the whole file back, not a refused block list forever."""
from __future__ import annotations

import os

import pytest

from plumbing.blobstore import BlobStore
from tests.capture_engine.streamkit import records, stream_single_file, wait_for


@pytest.mark.parametrize("how", ["deleted", "overwritten"])
def test_a_blob_removed_mid_stream_is_whole_again_at_the_next_commit(tmp_path, azurite, how):
    blob_name = f"{how}.cap"
    path, token = azurite.blob_sas_uri("replaced", blob_name).split("?", 1)
    blob = azurite.service().get_blob_client("replaced", blob_name)
    local = str(tmp_path / "grow.cap")
    recorder, streamer, clock = stream_single_file(
        path, token, local, BlobStore(timeout=5), commit_bytes=16 * 1024, retry_seconds=0.2,
        retry_max_seconds=0.5)

    def whole_file_stored() -> bool:
        with open(local, "rb") as source:
            return blob.exists() and azurite.read_blob("replaced", blob_name) == source.read()
    try:
        recorder.accept_batch(records(0, 40), 40)  # 40 KB: two full 16 KiB blocks committed
        wait_for("the first commits", whole_file_stored)
        if how == "deleted":
            blob.delete_blob()
        else:
            blob.upload_blob(b"someone else's data", overwrite=True)
        recorder.accept_batch(records(40, 3), 3)
        clock.sleep(31)
        try:
            wait_for("the whole file in storage again", whole_file_stored, timeout=10)
        except AssertionError as failed:
            raise AssertionError(f"{failed}: {streamer.storage_problem}") from None
    finally:
        streamer.finish()
        recorder.close()
    assert streamer.error is None and streamer.storage_problem is None, streamer.storage_problem
    assert whole_file_stored(), "the last commit did not put the whole file back"
    assert os.path.getsize(local) == 24 + 43 * 1016
