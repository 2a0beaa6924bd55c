"""The session time limit is read from the injected clock: the default five hours pass when
the test says so, and every packet captured until then is kept."""
from __future__ import annotations

import time

import pytest

from capture_engine.settings import LIMITS, parse_capture_settings
from plumbing.clock import ManualClock
from tests.capture_engine import helpers, traffic
from tests.capture_engine.session_util import start_session

pytestmark = pytest.mark.root
DEFAULT_TIME_LIMIT = LIMITS["timeLimitInSeconds"][0]


def test_default_time_limit_ends_the_session_when_the_clock_reaches_it(lab, tmp_path):
    request = parse_capture_settings(
        {"name": "fivehours", "storageLocation": {"filePath": "fivehours.cap"},
         "interfaces": ["cap0"], "filters": [{"protocol": "UDP", "localPort": "7777"}]},
        capture_root=str(tmp_path))
    assert request.time_limit == DEFAULT_TIME_LIMIT
    clock = ManualClock()
    running = start_session(lab, request, "rawsocket", clock=clock)
    traffic.blast(lab, 50, 64, 7777)
    time.sleep(1.0)  # the packets reach the ring: a capture keeps what it saw before the stop
    assert running.thread.is_alive(), "the session ended before its clock reached the limit"
    clock.advance(DEFAULT_TIME_LIMIT - 1)
    time.sleep(1.0)
    assert running.thread.is_alive(), "the session ended a second before its limit"
    clock.advance(1)
    result = running.finish(timeout=15)
    assert result.stop_reason == "TimeExceeded", result.querystatus()
    stopped = (result.capture_stop_time - result.capture_start_time).total_seconds()
    assert stopped >= DEFAULT_TIME_LIMIT, f"stopped {stopped} s after the start, on its clock"
    captured = {int.from_bytes(r.data[42:46], "big") for r in helpers.read_pcap(result.local_path)}
    assert captured == set(range(50)), f"missing: {sorted(set(range(50)) - captured)[:10]}"
