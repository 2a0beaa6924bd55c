"""Hunt: the runtime's limits are read on its own clock, uploads included."""
from __future__ import annotations

import json
from pathlib import Path

from handler.runtime import BlobUris, Runtime
from handler.state import OperationRecord
from plumbing.clock import ManualClock
from tests.handler.runtimes import local_runtime


def _runtime(tmp_path: Path) -> Runtime:
    """A runtime on a ManualClock: its monotonic() starts at 0, far from the system's."""
    return local_runtime(tmp_path, ManualClock())


def test_status_upload_deadline_is_read_on_the_runtime_clock(tmp_path: Path, azurite) -> None:
    """publish(deadline=) is an instant of the runtime's clock (commands take it from
    rt.clock.monotonic()); the upload must be bounded on that same clock. A clock whose
    monotonic() starts at 0 (a test's, or another process's counter) made the status upload
    fail at once as 'Timeout', never tried."""
    rt = _runtime(tmp_path)
    clock = rt.clock
    azurite.create_container("hunt7")
    rt._uris[1] = BlobUris(azurite.blob_sas_uri("hunt7", "status-1.json"), None)
    rt.store.save_operation(OperationRecord(1, "packetCapture", "success", 0, "captured"))
    record = rt.publish(1, deadline=clock.monotonic() + 30.0)
    assert record is not None
    assert "statusBlobError" not in record.detail, record.detail.get("statusBlobError")
    sent = json.loads(azurite.read_blob("hunt7", "status-1.json"))
    assert sent[0]["status"]["formattedMessage"]["message"] == "captured"


def test_the_vmsnapshot_status_blob_is_the_services_document_byte_for_byte(
        tmp_path: Path, azurite) -> None:
    """Guard (passes on main): the local status file gains `capability`; the status blob the
    backup service parses stays snapshot.result's document exactly, with no key of ours."""
    from snapshot.result import error_result

    rt = _runtime(tmp_path)
    azurite.create_container("hunt7")
    rt._uris[2] = BlobUris(azurite.blob_sas_uri("hunt7", "status-2.json"), None)
    rt.store.save_operation(OperationRecord(2, "snapshot", "error", 121, "freeze failed"))
    record = rt.publish(2)  # bounded by the policy alone: this test is about the bytes
    assert record is not None and "statusBlobError" not in record.detail
    sent = azurite.read_blob("hunt7", "status-2.json")
    expected = json.dumps(error_result(121, "freeze failed").status_blob_document(
        rt.clock.now()), separators=(",", ":")).encode()
    assert sent == expected, f"the status blob changed:\n{sent!r}\n!=\n{expected!r}"
    assert b"capability" not in sent
    local = json.loads((rt.env.status_folder / "2.status").read_text())[0]["status"]
    assert (local["code"], local["capability"]) == (121, "VMSnapshot")
