"""A block-list commit storage executes late - after the streamer gave up on it and
committed more - must not take the blob back to that older, shorter list (nothing lost at
the end, silently)."""
from __future__ import annotations

import dataclasses

from plumbing.blobstore import DEFAULT_POLICY, BlobStore
from tests.capture_engine.streamkit import records, stream_single_file, wait_for
from tests.hunt5.holdproxy import HoldProxy


def test_a_commit_executed_late_never_shrinks_the_blob(tmp_path, azurite):
    uri = azurite.blob_sas_uri("late", "late.cap")
    blob = azurite.service().get_blob_client("late", "late.cap")
    proxy = HoldProxy(azurite.port)
    path, token = proxy.rewrite(uri).split("?", 1)
    local = str(tmp_path / "late.cap")
    store = BlobStore(timeout=1, policy=dataclasses.replace(DEFAULT_POLICY, attempts=1))
    recorder, streamer, clock = stream_single_file(
        path, token, local, store, commit_bytes=16 * 1024, retry_seconds=1.0, retry_max_seconds=1.0)

    def stored() -> bytes:
        return azurite.read_blob("late", "late.cap") if blob.exists() else b""

    def whole_file_stored() -> bool:
        with open(local, "rb") as source:
            return stored() == source.read()
    try:
        recorder.accept_batch(records(0, 20), 20)
        clock.sleep(31)
        wait_for("the first commit", whole_file_stored)
        proxy.hold_next_commit()
        recorder.accept_batch(records(20, 5), 5)
        clock.sleep(31)
        wait_for("a commit held", proxy.held.is_set)
        wait_for("the streamer gave up on it", lambda: streamer.storage_problem is not None)
        clock.sleep(2)  # the next try
        wait_for("the commit sent again", whole_file_stored)
        recorder.accept_batch(records(25, 30), 30)
        clock.sleep(31)
        wait_for("a later commit", whole_file_stored)
    finally:
        streamer.finish()
        recorder.close()
    assert streamer.error is None and whole_file_stored(), "the final commit failed"
    proxy.release()
    wait_for("the held commit delivered late", proxy.delivered.is_set)
    proxy.close()
    with open(local, "rb") as source:
        whole = source.read()
    assert stored() == whole, \
        f"the late commit took the blob back to {len(stored())} of {len(whole)} bytes"


def test_commits_refused_for_long_never_pile_up_staged_blocks(tmp_path, azurite):
    """Storage takes every block but refuses every commit: each try stages again, and the
    blocks left uncommitted stay about the file's block count (Azure keeps at most 100,000)."""
    uri = azurite.blob_sas_uri("late", "refused.cap")
    blob = azurite.service().get_blob_client("late", "refused.cap")
    proxy = HoldProxy(azurite.port)
    proxy.refuse_commits = True
    path, token = proxy.rewrite(uri).split("?", 1)
    local = str(tmp_path / "refused.cap")
    store = BlobStore(timeout=2, policy=dataclasses.replace(DEFAULT_POLICY, attempts=1))
    recorder, streamer, clock = stream_single_file(
        path, token, local, store, commit_bytes=16 * 1024, retry_seconds=1.0, retry_max_seconds=1.0)
    recorder.accept_batch(records(0, 100), 100)  # about 100 KB: 7 blocks
    try:
        for attempt in range(1, 13):
            clock.sleep(31)
            # A try that failed otherwise (a stage timing out on a loaded machine) is retried
            # once the clock passes its 1 s back-off: move it on while waiting.
            wait_for(f"commit {attempt} refused",
                     lambda n=attempt: proxy.refused >= n or clock.sleep(2) is not None)
        blocks = blob.get_block_list("uncommitted")[1]
    finally:
        streamer.abandon()
        recorder.close()
        proxy.close()
    assert len(blocks) <= 7 + proxy.refused, \
        f"{len(blocks)} uncommitted blocks after {proxy.refused} refused commits"
