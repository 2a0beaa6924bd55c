"""Hunt: every code the status shows is labelled with the table it is really from."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import capture_engine.errors as capture_errors
from handler.operations.registry import build_registry
from handler.runtime import Runtime
from handler.state import JobRecord, OperationRecord
from tests.handler.runtimes import local_runtime


@pytest.fixture
def runtime(tmp_path: Path) -> Runtime:
    return local_runtime(tmp_path)


def _capture_codes() -> set[int]:
    """Every code of the capture engine's table: each CaptureError subclass, however deep."""
    found, todo = set(), [capture_errors.CaptureError]
    while todo:
        cls = todo.pop()
        found.add(cls.code)
        todo += cls.__subclasses__()
    return found


def _status(rt: Runtime, record: OperationRecord) -> Any:
    rt.store.save_operation(record)
    rt.render_status(record.seq)
    return json.loads((rt.env.status_folder / f"{record.seq}.status").read_text())[0]["status"]


@pytest.mark.parametrize("code", [131, 122])
def test_a_capture_runtime_code_in_the_status_is_labelled_packet_capture(
        runtime: Runtime, code: int) -> None:
    """131 (the file removed mid-capture) and 122 (the kernel refused the filter) are the
    capture's, in docs/packet-capture.md's table, and end a session's job as they are."""
    runtime.store.save_job(JobRecord("capture-1", "packetCapture", 1, "c1", state="finished",
                                     status="error", code=code, message="capture ended"))
    status = _status(runtime, OperationRecord(1, "packetCapture", "error", code, "ended",
                                              jobs=["capture-1"]))
    (sub,) = status["substatus"]
    assert (sub["code"], sub["capability"]) == (code, "packetCapture"), \
        f"capture code {code} labelled {sub.get('capability')!r}"
    assert status["capability"] == "packetCapture"


def test_every_capture_error_code_is_labelled_packet_capture() -> None:
    """Code 1 is left out: internal in both tables, it is labelled the handler's (documented
    in PacketCapture.status_code)."""
    op = build_registry({})["packetCapture"]
    wrong = {code: op.status_code(code).capability for code in sorted(_capture_codes() - {1})
             if op.status_code(code).capability != "packetCapture"}
    assert not wrong, f"capture codes labelled as another table's: {wrong}"
    assert op.status_code(1).capability == "handler", "1, internal in both, stays the handler's"
