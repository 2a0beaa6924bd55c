"""A streaming process stopped (SIGSTOP) for longer than its commit interval and its store's
timeouts, then continued: it catches up, and its blob ends as the whole file."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from tests.hunt5.test_stream_crashes import ROOT, tshark_ok


def test_a_stopped_and_continued_streamer_ends_whole(tmp_path, azurite):
    storage, token = azurite.blob_sas_uri("sigstop", "vm/stopped.cap").split("?", 1)
    local = str(tmp_path / "stopped.cap")
    spec = {"storage": storage, "token": token, "local": local, "root": str(tmp_path),
            "commit_bytes": 256 * 1024, "batches": 10}
    child = subprocess.Popen([sys.executable, "-m", "tests.hunt5.grow_child", json.dumps(spec)],
                             env={**os.environ, "PYTHONPATH": ROOT}, cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(1.5)
        child.send_signal(signal.SIGSTOP)
        time.sleep(12)  # > the 0.2 s commit interval, > the store's 10 s timeout
        child.send_signal(signal.SIGCONT)
        _, err = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
    assert child.returncode == 0, err[-800:]
    stored = azurite.read_blob("sigstop", "vm/stopped.cap")
    with open(local, "rb") as source:
        assert stored == source.read() and tshark_ok(stored), "the blob is not the whole file"
