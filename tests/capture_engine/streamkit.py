"""What the streamer's tests share: numbered pcap records, a wait, and one single-file capture
streamed to a blob with the thresholds a test needs (time moved by a manual clock)."""
from __future__ import annotations

import os
import time
from typing import Any, Callable

from capture_engine.output import OutputPlan, Recorder
from capture_engine.pcapfile import FdSink
from capture_engine.settings import CaptureRequest
from capture_engine.streaming import Streamer
from capture_engine.streamstate import StreamTuning
from plumbing.blobstore import BlobStore
from plumbing.clock import ManualClock

RECORD = 1000


def records(first: int, count: int) -> bytes:
    """`count` pcap records of RECORD bytes, numbered from `first`."""
    return b"".join(n.to_bytes(4, "little") + bytes(4) + RECORD.to_bytes(4, "little") * 2 +
                    n.to_bytes(4, "big") + bytes(RECORD - 4) for n in range(first, first + count))


def wait_for(what: str, check: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"never: {what}")


def stream_single_file(path: str, token: str, local: str, store: BlobStore, *,
                       total_bytes: int = 10_000_000,
                       **tuning: Any) -> tuple[Recorder, Streamer, ManualClock]:
    """A started single-file capture at `local` streaming to blob `path` (SAS `token`), no
    free-space floor; `tuning` sets the StreamTuning fields the test cares about."""
    request = CaptureRequest(name=os.path.splitext(os.path.basename(local))[0],
                             storage_path=path, file_path=local,
                             capture_root=os.path.dirname(local), total_bytes=total_bytes)
    recorder = Recorder(OutputPlan(local, 65535, total_bytes), FdSink())
    recorder.start()
    clock = ManualClock()
    streamer = Streamer(request, recorder, store, token, clock,
                        StreamTuning(floor_bytes=0, floor_fraction=0.0, **tuning))
    streamer.start()
    return recorder, streamer, clock
