"""The querystatus stays a few KiB whatever happens (the agent cuts substatus messages at 10 KiB
and refuses a status file over 128 KiB), and its error fields always survive."""
from __future__ import annotations

import json
from datetime import datetime, timezone

from capture_engine.result import CaptureResult

BOUND = 4096
URL = "https://acct.blob.core.windows.net/captures/vm1/2024/05/01/ring"


def _ring_result(files: int, **changes) -> CaptureResult:
    local = tuple(f"/var/captures/ring/weekly-capture_{n:05d}.cap" for n in range(1, files + 1))
    fields = dict(
        name="weekly-capture", status="Error", stop_reason="TimeExceeded",
        errors=("StorageFailed",), error_code=140,
        error_message="upload failed (network): connection reset; the capture is kept at "
                      + local[-1],
        capture_start_time=datetime(2024, 5, 1, tzinfo=timezone.utc),
        capture_stop_time=datetime(2024, 5, 8, tzinfo=timezone.utc),
        packets_captured=10**9, packets_dropped=12, bytes_written=10**12, local_files=local,
        uploaded_urls=tuple(f"{URL}_{n:05d}.cap" for n in range(1, files // 2)),
        upload_bytes=10**11, upload_total=10**12, backend="libpcap",
        interfaces=("eth0", "eth1"), extra={"elapsedSeconds": 604800.0})
    fields.update(changes)
    return CaptureResult(**fields)


def _check(status: dict) -> int:
    size = len(json.dumps(status))
    assert size <= BOUND, f"querystatus is {size:,} bytes, over {BOUND:,}"
    for key in ("packetCaptureStatus", "errorCode", "errorMessage", "packetCaptureError"):
        assert key in status, f"{key} is missing"
    return size


def test_a_ring_of_10000_files_keeps_querystatus_small_and_says_what_it_holds():
    status = _ring_result(10_000).querystatus()
    _check(status)
    assert status["packetCaptureStatus"] == "Error" and status["errorCode"] == 140, status
    assert status["errorMessage"].startswith("upload failed"), status["errorMessage"]
    assert status["localFileCount"] == 10_000, status
    assert status["firstLocalFile"].endswith("_00001.cap"), status
    assert status["localPath"].endswith("_10000.cap"), status
    assert status["uploadedCount"] == 4999 and status["uploadedUrl"].endswith("_04999.cap")


def test_querystatus_stays_bounded_with_every_field_at_its_worst():
    long_path = "/var/captures/" + "d" * 3000 + "/é" * 500 + "x.cap"
    result = _ring_result(
        10_000, name="n" * 80, error_message="boom " * 20_000 + "\u2603" * 5000,
        local_files=(long_path,) * 10_000, uploaded_urls=(URL + "x" * 5000,) * 10_000,
        interfaces=tuple(f"veth{n:011d}" for n in range(500)),
        extra={"elapsedSeconds": 1.0, "requestedLocalPath": long_path})
    status = result.querystatus()
    _check(status)
    assert status["errorMessage"].startswith("boom boom"), status["errorMessage"][:80]
    assert status["interfaceCount"] == 500, status


def test_a_running_capture_without_errors_still_carries_the_error_fields():
    status = _ring_result(3, status="Running", stop_reason=None, errors=(), error_code=None,
                          error_message=None).querystatus()
    _check(status)
    assert status["errorCode"] is None and status["packetCaptureError"] == [], status
