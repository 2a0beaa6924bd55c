"""A single file streamed by a Streamer alone (no capture), in a process a crash point kills:
records are written, one commit every 0.2 s, until the armed point is reached."""
from __future__ import annotations

import json
import sys
import time

from capture_engine.output import OutputPlan, Recorder
from capture_engine.pcapfile import FdSink
from capture_engine.settings import CaptureRequest
from capture_engine.streaming import Streamer
from capture_engine.streamstate import StreamTuning
from plumbing.blobstore import BlobStore
from plumbing.clock import SystemClock
from tests.capture_engine.streamkit import records


def main() -> None:
    spec = json.loads(sys.argv[1])
    request = CaptureRequest(name="grow", storage_path=spec["storage"], file_path=spec["local"],
                             capture_root=spec["root"], total_bytes=100_000_000)
    recorder = Recorder(OutputPlan(spec["local"], 65535, request.total_bytes), FdSink())
    recorder.start()
    tuning = StreamTuning(commit_seconds=0.2, commit_bytes=spec["commit_bytes"],
                          floor_bytes=0, floor_fraction=0.0)
    streamer = Streamer(request, recorder, BlobStore(timeout=10), spec["token"], SystemClock(),
                        tuning)
    streamer.start()
    for batch in range(spec["batches"]):
        recorder.accept_batch(records(batch * 1000, 1000), 1000)  # ~1 MB a batch
        time.sleep(0.3)
    streamer.finish()
    recorder.close()


if __name__ == "__main__":
    main()
