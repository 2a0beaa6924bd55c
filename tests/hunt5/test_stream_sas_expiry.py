"""The SAS expires while a ring streams: the session ends with code 141, every file storage
did not take is still on disk, the record lets a later enable send them, and no status or
note shows the signature."""
from __future__ import annotations

import json
import os
import sys
import threading
import time
from datetime import timedelta

import pytest

from capture_engine.recovery import pending_uploads
from capture_engine.session import run_capture
from capture_engine.settings import parse_capture_settings
from capture_engine.streamstate import StreamTuning
from plumbing.blobstore import DEFAULT_POLICY, BlobStore
from tests.hunt5.test_stream_crashes import SENDER, numbers

pytestmark = pytest.mark.root


def test_a_sas_expiring_mid_capture_ends_141_with_every_unsent_file_kept(h11b_lab, azurite,
                                                                         tmp_path):
    import dataclasses

    vm, peer = h11b_lab
    uri = azurite.container_sas_uri("expiring", expires_in=timedelta(seconds=5))
    container, token = uri.split("?", 1)
    root = str(tmp_path / "root")
    request = parse_capture_settings(
        {"name": "exp", "interfaces": ["cap0"], "continuousCapture": True,
         "filters": [{"protocol": "UDP", "localPort": "5000"}],
         "storageLocation": {"storagePath": f"{container}/vm/r.cap", "localPath": "r.cap"},
         "captureSettings": {"fileCount": 2, "fileSizeInBytes": 30_000}}, capture_root=root)
    tuning = StreamTuning(floor_bytes=0, floor_fraction=0.0, retry_seconds=0.2,
                          retry_max_seconds=0.5)
    store = BlobStore(timeout=5, policy=dataclasses.replace(DEFAULT_POLICY, attempts=1))
    stop, statuses, holder = threading.Event(), [], {}

    def work() -> None:
        holder["result"] = run_capture(request, blob_store=store, sas_token=token,
                                       stop_event=stop, on_progress=statuses.append,
                                       backend="rawsocket", netns=vm.name,
                                       progress_interval=0.5, stream_tuning=tuning)
    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    time.sleep(1.0)
    peer.run([sys.executable, "-c", SENDER, "1500"], timeout=60)
    stop.set()
    thread.join(60)
    assert not thread.is_alive(), "the session did not end"
    status = holder["result"].querystatus()
    assert status["errorCode"] == 141, f"not SasExpired: {status.get('errorCode')} " \
                                       f"{status.get('errorMessage')}"
    client = azurite.service().get_container_client("expiring")
    stored = {b.name.rsplit("_", 1)[1] for b in client.list_blobs()}
    local = sorted(n for n in os.listdir(root) if n.startswith("r_"))
    assert stored, "nothing went up before the SAS expired"
    highest = max(int(name[2:7]) for name in local)
    missing = [seq for seq in range(1, highest + 1)
               if f"{seq:05d}.cap" not in stored and f"r_{seq:05d}.cap" not in local]
    assert not missing, f"ring files neither in storage nor on disk: {missing}"
    assert pending_uploads(request), "no record left for a later enable to send the rest"
    signature = token.split("sig=")[1].split("&")[0]
    assert signature not in json.dumps(statuses + [status]), "the SAS signature leaked"
    streams = os.path.join(root, ".streams")
    for name in os.listdir(streams):
        with open(os.path.join(streams, name), encoding="utf-8") as record:
            text = record.read()
        assert signature not in text and "sig=" not in text, f"a SAS in the record: {text}"
    assert sum(len(numbers(open(os.path.join(root, n), "rb").read())) for n in local) > 0
