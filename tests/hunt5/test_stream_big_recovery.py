"""A single file over the SDK's single-put size (4 MiB) killed between staging and committing:
the recovery must still send it (the staged blocks left behind must not refuse it)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from capture_engine.recovery import recover_uploads
from capture_engine.settings import CaptureRequest
from plumbing.blobstore import BlobStore
from tests.hunt5.test_stream_crashes import ROOT, tshark_ok


def test_a_big_file_killed_before_its_commit_is_recovered_whole(tmp_path, azurite):
    storage, token = azurite.blob_sas_uri("bigcrash", "vm/big.cap").split("?", 1)
    root, local = str(tmp_path), str(tmp_path / "big.cap")
    spec = {"storage": storage, "token": token, "local": local, "root": root,
            "commit_bytes": 1024 * 1024, "batches": 12}
    env = {**os.environ, "HANDLER_CRASH_AT": "capture.stream.before_commit@6",
           "HANDLER_CRASH_TRACE": str(tmp_path / "trace"), "PYTHONPATH": ROOT}
    child = subprocess.run([sys.executable, "-m", "tests.hunt5.grow_child", json.dumps(spec)],
                           env=env, cwd=ROOT, capture_output=True, timeout=120)
    assert child.returncode == -9, f"not killed: {child.stderr[-800:]!r}"
    assert os.path.getsize(local) > 5 * 1024 * 1024, "the file is not over the single-put size"
    request = CaptureRequest(name="grow", storage_path=storage, file_path=local,
                             capture_root=root, total_bytes=100_000_000)
    recovered = recover_uploads(request, BlobStore(timeout=10), token)
    assert recovered.error is None, recovered.error
    stored = azurite.read_blob("bigcrash", "vm/big.cap")
    with open(local, "rb") as source:
        assert stored == source.read(), "the blob is not the whole local file"
    assert tshark_ok(stored)
