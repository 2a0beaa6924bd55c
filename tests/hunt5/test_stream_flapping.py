"""Storage that hangs and comes back, again and again, while a single file streams (held
requests delivered late when it returns): at the end, and after every late request has
landed, the blob is the whole file - a valid pcap, nothing lost, nothing twice."""
from __future__ import annotations

import dataclasses
import threading
import time

from devtools.stallproxy import StallProxy
from plumbing.blobstore import DEFAULT_POLICY, BlobStore
from tests.capture_engine.streamkit import records, stream_single_file
from tests.hunt5.test_stream_crashes import tshark_ok


def test_a_single_file_through_flapping_storage_ends_whole(tmp_path, azurite):
    uri = azurite.blob_sas_uri("flap", "flap.cap")
    with StallProxy("127.0.0.1", azurite.port) as proxy:
        path, token = proxy.rewrite(uri).split("?", 1)
        local = str(tmp_path / "flap.cap")
        store = BlobStore(timeout=1, policy=dataclasses.replace(DEFAULT_POLICY, attempts=2,
                                                                base_delay=0.1))
        recorder, streamer, clock = stream_single_file(
            path, token, local, store, total_bytes=50_000_000, commit_seconds=1,
            commit_bytes=16 * 1024, retry_seconds=0.3, retry_max_seconds=0.3)
        halt = threading.Event()

        def flap() -> None:
            while not halt.wait(0.7):
                proxy.stall()
                if halt.wait(1.3):
                    break
                proxy.resume()
        flapper = threading.Thread(target=flap, daemon=True)
        flapper.start()
        try:
            for n in range(35):  # 7 s of 5 records every 0.2 s, commits every "second"
                recorder.accept_batch(records(n * 5, 5), 5)
                clock.sleep(0.5)
                time.sleep(0.2)
        finally:
            halt.set()
            flapper.join(5)
            proxy.resume()
            recorder.close()
            streamer.finish()
        time.sleep(2)  # requests held during a stall, delivered late
    with open(local, "rb") as source:
        whole = source.read()
    stored = azurite.read_blob("flap", "flap.cap")
    assert streamer.error is None and streamer.storage_problem is None, streamer.storage_problem
    assert stored == whole and tshark_ok(stored), \
        f"the blob is {len(stored)} bytes, the file {len(whole)}"
