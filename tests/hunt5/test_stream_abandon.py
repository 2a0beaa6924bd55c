"""A session that fails while storage hangs mid-stage: the streamer is let go within its
bound (ABANDON_SECONDS), so the failure is reported then, not after the store's whole retry
policy; the record stays for a restart to send the rest."""
from __future__ import annotations

import time

from capture_engine.streaming import ABANDON_SECONDS
from capture_engine.streamstate import Journal
from devtools.stallproxy import StallProxy
from plumbing.blobstore import BlobStore
from tests.capture_engine.streamkit import records, stream_single_file, wait_for


def test_abandon_returns_within_its_bound_while_storage_hangs(tmp_path, azurite):
    uri = azurite.blob_sas_uri("abandon", "hang.cap")
    with StallProxy("127.0.0.1", azurite.port) as proxy:
        path, token = proxy.rewrite(uri).split("?", 1)
        local = str(tmp_path / "hang.cap")
        recorder, streamer, clock = stream_single_file(
            path, token, local, BlobStore(timeout=10), commit_bytes=16 * 1024)
        proxy.stall()
        recorder.accept_batch(records(0, 30), 30)
        wait_for("a stage under way", lambda: any(
            t.name == "blob-request" for t in __import__("threading").enumerate()))
        started = time.monotonic()
        streamer.abandon()
        took = time.monotonic() - started
        recorder.close()
        proxy.resume()
    assert took <= ABANDON_SECONDS + 2, f"abandon took {took:.0f}s (bound {ABANDON_SECONDS}s)"
    assert Journal(str(tmp_path)).records("hang"), "the record a restart needs is gone"
