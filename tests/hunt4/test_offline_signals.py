"""Ctrl-C or SIGTERM during -r: a stop request, as for a live capture - the matches so far
written as a valid file and the summary printed, never a KeyboardInterrupt traceback."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from capture_engine.pcapfile import RECORD_HEADER, file_header
from tests.capture_engine import helpers
from tests.hunt4 import pcapng_craft as ng
from tests.hunt4.test_pcapng_input import CLI, ROOT

PACKETS = 3_000_000  # a few seconds of -r: long enough to be stopped midway


@pytest.fixture(scope="module")
def large(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("large") / "large.pcap")
    record = RECORD_HEADER.pack(1_700_000_000, 0, len(ng.FRAME), len(ng.FRAME)) + ng.FRAME
    with open(path, "wb") as out:
        out.write(file_header(262144))
        for _ in range(PACKETS // 100_000):
            out.write(record * 100_000)
    return path


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_r_stops_it_with_a_summary(large, tmp_path, sig):
    out = str(tmp_path / "out.pcap")
    proc = subprocess.Popen(CLI + ["-r", large, "-w", out, "--json", "udp"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=str(tmp_path),
                            env={**os.environ, "PYTHONPATH": ROOT})
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (not os.path.exists(out) or
                                               os.path.getsize(out) < 1 << 20):
            time.sleep(0.05)  # the first megabyte of matches is written: it is reading
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = stderr.decode()
    assert proc.returncode == 0 and "Traceback" not in err, (proc.returncode, err[-400:])
    summary = json.loads(stdout)
    assert summary["stopReason"] == "StoppedByRequest", summary
    kept = helpers.read_pcap(out)
    assert 0 < len(kept) == summary["packetsWritten"] < PACKETS, (len(kept), summary)
    assert summary["bytesWritten"] == os.path.getsize(out), summary
