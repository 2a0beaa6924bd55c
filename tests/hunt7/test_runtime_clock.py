"""Hunt: the runtime's limits are read on its own clock, uploads included."""
from __future__ import annotations

import json
import logging
from pathlib import Path

from handler.environment import HandlerEnvironment
from handler.events import EventWriter
from handler.operations.registry import build_registry
from handler.runtime import BlobUris, MemoryLog, Runtime
from handler.state import OperationRecord
from plumbing.blobstore import BlobStore
from plumbing.clock import ManualClock
from plumbing.redact import Redactor


def test_status_upload_deadline_is_read_on_the_runtime_clock(tmp_path: Path, azurite) -> None:
    """publish(deadline=) is an instant of the runtime's clock (commands take it from
    rt.clock.monotonic()); the upload must be bounded on that same clock. A clock whose
    monotonic() starts at 0 (a test's, or another process's counter) made the status upload
    fail at once as 'Timeout', never tried."""
    ext = tmp_path / "ext"
    folders = {name: ext / name for name in ("log", "config", "status")}
    for folder in folders.values():
        folder.mkdir(parents=True)
    env = HandlerEnvironment("Contoso.X", ext, tmp_path, folders["log"], folders["config"],
                             folders["status"], None, None)
    redactor = Redactor()
    clock = ManualClock()
    rt = Runtime(env, build_registry({}), redactor, BlobStore(),
                 logging.getLogger("hunt7-clock"), EventWriter(None, "1.0", redactor),
                 MemoryLog(logging.Formatter()), clock=clock)
    azurite.create_container("hunt7")
    rt._uris[1] = BlobUris(azurite.blob_sas_uri("hunt7", "status-1.json"), None)
    rt.store.save_operation(OperationRecord(1, "packetCapture", "success", 0, "captured"))
    record = rt.publish(1, deadline=clock.monotonic() + 30.0)
    assert record is not None
    assert "statusBlobError" not in record.detail, record.detail.get("statusBlobError")
    sent = json.loads(azurite.read_blob("hunt7", "status-1.json"))
    assert sent[0]["status"]["formattedMessage"]["message"] == "captured"
