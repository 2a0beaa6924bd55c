"""A streamed capture run alone in a process a crash point will SIGKILL (crash tests)."""
from __future__ import annotations

import json
import sys

from capture_engine.session import run_capture
from capture_engine.settings import parse_capture_settings
from capture_engine.streamstate import StreamTuning
from plumbing.blobstore import BlobStore


def main() -> None:
    spec = json.loads(sys.argv[1])
    request = parse_capture_settings(spec["settings"], capture_root=spec["root"])
    tuning = StreamTuning(commit_seconds=0.5, commit_bytes=spec["commit_bytes"], floor_bytes=0,
                          floor_fraction=0.0, retry_seconds=0.2, retry_max_seconds=0.5)
    result = run_capture(request, blob_store=BlobStore(timeout=5), sas_token=spec["token"],
                         backend="rawsocket", netns=spec["netns"], stream_tuning=tuning)
    print(json.dumps(result.querystatus()))


if __name__ == "__main__":
    main()
