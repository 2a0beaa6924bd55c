"""Hunt: BlobStore.upload_file is the one blob call not walled in wall-clock time, so storage
that trickles its answer holds it past its deadline for as long as the trickle lasts. It is the
call a capture worker uploads with: after the time limit (or a `stop`), the session stays
"Running"/transitioning and the name stays "already running" (151) while storage dribbles."""
from __future__ import annotations

import threading
import time

from plumbing.blobstore import BlobError, BlobStore
from tests.hunt.trickle import TrickleServer

DEADLINE = 3.0
SLACK = 7.0  # WALL_MARGIN (1 s) and a loaded machine


def test_upload_file_ends_by_its_deadline_when_storage_trickles(tmp_path):
    source = tmp_path / "c.cap"
    source.write_bytes(b"\xd4\xc3\xb2\xa1" + b"\0" * 4000)
    ended = threading.Event()
    outcome = {}

    with TrickleServer(interval=0.5, limit=60) as trickle:
        store = BlobStore(timeout=DEADLINE).until(time.monotonic() + DEADLINE)

        def upload() -> None:
            try:
                outcome["sent"] = store.upload_file(trickle.uri("caps", "c.cap"), str(source))
            except BlobError as exc:
                outcome["error"] = exc
            finally:
                ended.set()

        worker = threading.Thread(target=upload, daemon=True)
        started = time.monotonic()
        worker.start()
        finished = ended.wait(DEADLINE + SLACK)
        waited = time.monotonic() - started
        assert trickle.requests, "the upload reached the storage"
    worker.join(30)  # closing the server ends the trickle, and the upload with it
    assert finished, (f"upload_file still running {waited:.0f}s after a {DEADLINE:.0f}s "
                      "deadline: storage that trickles holds it without bound")
