"""Status files: the agent's exact schema, atomic writes, trimmed under 128 KiB yet valid."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from handler.errors import HANDLER, PACKET_CAPTURE, StatusCode
from handler.status import (
    MAX_STATUS_BYTES,
    StatusReport,
    Substatus,
    read_status,
    render,
    write_status,
)

NOW = datetime(2026, 11, 22, 12, 0, 0, tzinfo=timezone.utc)
OK = StatusCode(HANDLER, 0)


def test_rendered_status_has_exactly_the_agent_schema():
    report = StatusReport("Contoso.X", "enable", "success", OK, "done",
                          [Substatus("cap1", "success", OK, '{"a": 1}')])
    (entry,) = render(report, NOW)
    assert entry["version"] == 1.0 and entry["timestampUTC"] == "2026-11-22T12:00:00Z"
    status = entry["status"]
    assert set(status) == {"name", "operation", "status", "code", "configurationAppliedTime",
                           "formattedMessage", "substatus"}
    assert status["formattedMessage"] == {"lang": "en-US", "message": "done"}
    assert status["substatus"][0] == {"name": "cap1", "status": "success", "code": 0,
                                      "formattedMessage": {"lang": "en-US",
                                                           "message": '{"a": 1}'}}


def test_invalid_status_values_are_refused_before_they_reach_the_agent():
    with pytest.raises(ValueError):
        StatusReport("x", "enable", "running", OK, "no such status")
    with pytest.raises(ValueError):
        StatusReport("x", "enable", "success", OK, "", [Substatus("s", "Running", OK, "")])


def test_oversized_substatus_is_trimmed_under_the_limit_and_stays_valid(tmp_path):
    huge = [Substatus(f"capture{i}", "success", OK, "x" * 40_000) for i in range(8)]
    report = StatusReport("Contoso.X", "enable", "success", OK, "eight captures", huge)
    data = write_status(tmp_path, 4, report, NOW)
    assert len(data) < MAX_STATUS_BYTES, f"{len(data)} bytes"
    document = read_status(tmp_path, 4)
    assert document == json.loads(data), "the file on disk is the trimmed document"
    names = [s["name"] for s in document[0]["status"]["substatus"]]
    assert names == [f"capture{i}" for i in range(8)], "trimming shortens, it drops no entry"
    messages = [s["formattedMessage"]["message"] for s in document[0]["status"]["substatus"]]
    trimmed = [m for m in messages if m.endswith("KiB]")]
    assert trimmed, "something had to be trimmed"
    assert all(m == "x" * 40_000 or m in trimmed for m in messages), "intact or marked"


def test_too_many_entries_are_dropped_rather_than_breaking_the_file(tmp_path):
    many = [Substatus(f"s{i}", "success", OK, "y" * 1500) for i in range(200)]
    data = write_status(tmp_path, 5, StatusReport("x", "enable", "success", OK, "m", many), NOW)
    document = json.loads(data)
    assert len(data) < MAX_STATUS_BYTES and 0 < len(document[0]["status"]["substatus"]) < 200


def test_write_is_atomic_no_temp_files_left(tmp_path):
    write_status(tmp_path, 1, StatusReport("x", "enable", "transitioning", OK, "a"), NOW)
    write_status(tmp_path, 1, StatusReport("x", "enable", "success", OK, "b"), NOW)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1.status"]
    assert read_status(tmp_path, 1)[0]["status"]["status"] == "success"


def test_state_keeps_the_newest_finished_jobs_and_the_current_operation(tmp_path):
    from handler.state import JobRecord, OperationRecord, StateStore

    store = StateStore(tmp_path / "state", tmp_path / "mrseq")
    for i in range(8):
        store.save_job(JobRecord(f"job{i}", "x", i, "n", state="finished",
                                 updated=f"2026-11-22T00:00:0{i}Z"))
        store.save_operation(OperationRecord(i, "x", "success", 0, ""))
    store.save_job(JobRecord("live", "x", 9, "n", state="running", updated="2026-01-01T00:00:00Z"))
    store.set_last_seq(0)
    removed = store.prune(keep_jobs=3, keep_operations=2)
    assert removed == [f"job{i}" for i in range(5)], removed
    assert sorted(j.job_id for j in store.jobs()) == ["job5", "job6", "job7", "live"]
    kept = sorted(int(p.stem) for p in (tmp_path / "state" / "ops").glob("*.json"))
    assert kept == [0, 6, 7], "the newest operations and the current sequence stay"


def _querystatus(name: str, files: int) -> str:
    """A capture's querystatus as a ring of `files` files would make it, error at the end."""
    paths = [f"/var/captures/{name}/ring_{i:06d}.cap" for i in range(files)]
    return json.dumps({"name": name, "packetCaptureStatus": "Error",
                       "packetCaptureError": ["CaptureFailed"], "stopReason": "InterfaceDown",
                       "packetsCaptured": 12345, "localFiles": paths, "uploadedUrls": paths,
                       "errorCode": 121, "errorMessage": "capture on eth0 failed: gone"})


@pytest.mark.parametrize("sessions,files", [(1, 10_000), (50, 200)])
def test_big_substatus_json_is_cut_to_valid_json_that_keeps_status_and_error(tmp_path, sessions,
                                                                            files):
    failed = StatusCode(PACKET_CAPTURE, 121)
    entries = [Substatus(f"cap{i}", "error", failed, _querystatus(f"cap{i}", files))
               for i in range(sessions)]
    data = write_status(tmp_path, 6, StatusReport("x", "enable", "success", OK, "m", entries),
                        NOW)
    assert len(data) < MAX_STATUS_BYTES, f"{len(data)} bytes"
    substatus = json.loads(data)[0]["status"]["substatus"]
    assert [s["name"] for s in substatus] == [f"cap{i}" for i in range(sessions)], \
        "every session keeps its entry"
    for entry in substatus:
        message = entry["formattedMessage"]["message"]
        assert len(message) <= 10 * 1024, "the agent cuts a message at 10 KiB: never let it"
        session = json.loads(message)  # valid JSON, not cut mid-way
        assert session["packetCaptureStatus"] == "Error" and session["errorCode"] == 121, session
        assert session["errorMessage"] == "capture on eth0 failed: gone", session
        assert session["stopReason"] == "InterfaceDown", session
