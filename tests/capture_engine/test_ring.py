"""Rings that run for weeks: names that never wrap, memory that does not grow, time limits."""
from __future__ import annotations

import os
import tracemalloc

import pytest

from capture_engine.output import OutputPlan, Recorder
from capture_engine.owners import Owners
from capture_engine.pcapfile import FdSink
from capture_engine.session import capture_files
from capture_engine.settings import file_url, parse_capture_settings
from tests.capture_engine.session_util import start_session

RING = {"name": "weeks", "continuousCapture": True,
        "storageLocation": {"localPath": "weeks.cap",
                            "storagePath": "https://acct.blob.core.windows.net/c/weeks.cap"},
        "captureSettings": {"fileCount": 10_000, "fileSizeInBytes": 1000}}


def _record(size: int = 60) -> bytes:
    return (1).to_bytes(4, "little") + bytes(4) + size.to_bytes(4, "little") * 2 + bytes(size)


def test_ring_file_and_blob_names_stay_unique_past_100000(tmp_path):
    request = parse_capture_settings(RING, capture_root=str(tmp_path))
    plan = OutputPlan(request.output_path(), 65535, 1000, 10_000)
    seqs = list(range(1, 200_001))
    paths = [plan.file_path(seq) for seq in seqs]
    assert len(set(paths)) == len(paths), "two ring files share a name"
    urls = [file_url(request, path, "sv=1&sig=x") for path in paths]
    assert len(set(urls)) == len(urls), \
        f"two ring files upload to one blob, e.g. {urls[0]} and {urls[100_000]}"
    assert urls[100_000].split("?")[0].endswith("weeks_100001.cap"), urls[100_000]


def test_ring_files_are_listed_in_rotation_order_past_100000(tmp_path):
    request = parse_capture_settings(RING, capture_root=str(tmp_path))
    plan = OutputPlan(request.output_path(), 65535, 1000, 10_000)
    made = [plan.file_path(seq) for seq in (99_998, 99_999, 100_000, 100_001)]
    owners = Owners(str(tmp_path))
    with owners.lock():
        owners.claim(request.name, plan.path, ring=True)
    for path in made:
        open(path, "wb").close()
    assert capture_files(request) == made, "not in rotation order"


def _rotate(recorder: Recorder, times: int) -> None:
    for _ in range(times):  # one 76-byte record per file: every record starts a new file
        recorder.accept_batch(_record(), 1)


def test_recorder_memory_does_not_grow_with_rotations(tmp_path):
    plan = OutputPlan(str(tmp_path / "r.cap"), 65535, 24 + 76 + 10, ring_files=3)
    recorder = Recorder(plan, FdSink())
    recorder.start()
    _rotate(recorder, 3000)
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        _rotate(recorder, 20_000)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
        recorder.close()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert recorder.seq == 23_000, f"expected one file per record, {recorder.seq} files"
    assert grown < 64 * 1024, f"20,000 more rotations grew memory by {grown:,} bytes"
    assert sorted(os.listdir(tmp_path)) == ["r_22998.cap", "r_22999.cap", "r_23000.cap"]


@pytest.mark.root
def test_ring_honours_time_limit_in_seconds(lab, tmp_path):
    request = parse_capture_settings(
        {"name": "ringtime", "continuousCapture": True, "timeLimitInSeconds": 2,
         "storageLocation": {"localPath": "ringtime.cap"}, "interfaces": ["cap0"]},
        capture_root=str(tmp_path))
    running = start_session(lab, request, "rawsocket")
    try:
        result = running.finish(timeout=15)
    finally:
        running.stop.set()
        running.thread.join(15)
    status = result.querystatus()
    assert status["stopReason"] == "TimeExceeded", status
    assert 2 <= status["elapsedSeconds"] < 4, status
