"""Every code in the status names the capability whose table it is from: the numbers collide
(121 is packet capture's CaptureFailed and VMSnapshot's FreezeFailed; 11 the handler's
settings-file error and VMSnapshot's parameter error)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from capture_engine.errors import CaptureFailedError
from handler.errors import CONNECTIVITY_CODE_BASE, SettingsFileError
from handler.operations.registry import build_registry
from handler.runtime import Runtime
from handler.state import JobRecord, OperationRecord
from snapshot.errors import Code
from tests.handler.runtimes import local_runtime


@pytest.fixture
def runtime(tmp_path: Path) -> Runtime:
    return local_runtime(tmp_path)


def status_of(rt: Runtime, record: OperationRecord) -> dict:
    rt.store.save_operation(record)
    rt.render_status(record.seq)
    document = json.loads((rt.env.status_folder / f"{record.seq}.status").read_text())
    return document[0]["status"]


def test_capture_and_snapshot_failures_with_one_number_name_their_capabilities(runtime):
    assert CaptureFailedError.code == Code.FREEZE_FAILED == 121, "the collision under test"
    runtime.store.save_job(JobRecord("capture-1", "packetCapture", 1, "c1", state="finished",
                                     status="error", code=121, message="capture failed"))
    capture = status_of(runtime, OperationRecord(1, "packetCapture", "error", 121,
                                                 "capture failed", jobs=["capture-1"]))
    snapshot = status_of(runtime, OperationRecord(2, "snapshot", "error", 121, "freeze failed"))
    assert capture["code"] == snapshot["code"] == 121, "the agent's code stays the integer"
    assert isinstance(capture["code"], int) and isinstance(snapshot["code"], int)
    assert (capture["capability"], snapshot["capability"]) == ("packetCapture", "VMSnapshot")
    (capture_sub,) = capture["substatus"]
    (snapshot_sub,) = snapshot["substatus"]
    assert (capture_sub["code"], capture_sub["capability"]) == (121, "packetCapture")
    assert (snapshot_sub["code"], snapshot_sub["capability"]) == (121, "VMSnapshot")


def test_eleven_is_the_handlers_settings_file_error_or_the_snapshot_parameter_error(runtime):
    assert SettingsFileError.code == Code.PARAMETER_ERROR == 11, "the collision under test"
    check = status_of(runtime, OperationRecord(3, "connectivityCheck", "error", 11,
                                               "settings file malformed"))
    snapshot = status_of(runtime, OperationRecord(4, "snapshot", "error", 11, "bad taskId"))
    assert (check["code"], check["capability"]) == (11, "handler")
    assert (snapshot["code"], snapshot["capability"]) == (11, "VMSnapshot")


def test_each_operation_names_whose_table_a_code_is_from():
    registry = build_registry({})
    capture, check, snapshot = (registry[c] for c in ("packetCapture", "connectivityCheck",
                                                      "snapshot"))
    assert [str(capture.status_code(c)) for c in (121, 150, 151, 13, 50)] == [
        "packetCapture 121", "packetCapture 150", "handler 151", "handler 13", "handler 50"]
    unreachable = CONNECTIVITY_CODE_BASE + 20
    assert [str(check.status_code(c)) for c in (unreachable, 13)] == [
        "connectivityCheck 220", "handler 13"]
    assert str(snapshot.status_code(1)) == "VMSnapshot 1", "all the backup service's numbers"


def test_an_unknown_command_is_reported_under_the_handlers_table(runtime):
    status = status_of(runtime, OperationRecord(5, "noSuchCommand", "error", 30, "unknown"))
    assert (status["code"], status["capability"]) == (30, "handler")
