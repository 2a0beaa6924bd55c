"""Live captures: tcpdump and both backends side by side on the same traffic."""
from __future__ import annotations

import subprocess

import dpkt
import pytest

from tests.capture_engine import helpers
from tests.capture_engine.conftest import LIVE_CASES

pytestmark = pytest.mark.root


def _window(live, path):
    return helpers.in_window(helpers.read_pcap(path), live.start, live.end + 0.2)


@pytest.mark.parametrize("case", list(LIVE_CASES))
def test_both_backends_capture_exactly_what_tcpdump_captures(live, case):
    snaplen = LIVE_CASES[case][1]
    expected = helpers.keys(_window(live, live.tcpdump[case]), snaplen)
    assert expected, f"{case}: tcpdump captured nothing: the case tests nothing"
    for backend, path in (("libpcap", live.libpcap[case].local_path),
                          ("rawsocket", live.raw[case]["localPath"])):
        got = helpers.keys(_window(live, path), snaplen)
        assert got == expected, (
            f"{case}/{backend}: differs from tcpdump; missing {helpers.describe(expected - got)}"
            f"; extra {helpers.describe(got - expected)}")


@pytest.mark.parametrize("case", list(LIVE_CASES))
def test_sessions_report_what_they_wrote(live, case):
    lp, raw = live.libpcap[case], live.raw[case]
    assert lp.backend == "libpcap" and raw["backend"] == "rawsocket", "backends were not forced"
    assert live.raw_maps[case] is None, f"raw-socket process mapped libpcap: {live.raw_maps[case]}"
    for status in (lp.querystatus(), raw):
        assert status["packetCaptureStatus"] == "Stopped", status.get("errorMessage")
        assert status["stopReason"] == "StoppedByRequest", status
        records = helpers.read_pcap(status["localPath"])
        assert status["packetsCaptured"] == len(records), status
        assert status["bytesWritten"] == 24 + sum(16 + r.caplen for r in records), status
        assert status["packetsDropped"] == 0, status


def test_snap_length_truncates_but_never_changes_matching(live):
    case = "two-filters-snap34"
    matching = helpers.in_window(helpers.tcpdump_filter(
        live.ref, "(tcp and (src port 22 or dst port 22)) or (udp and (src portrange "
        "5000-5002 or dst portrange 5000-5002))", live.ref + ".snap.pcap"), live.start,
        live.end + 0.2)
    assert matching, "no packet of the reference matches: the test would prove nothing"
    for path in (live.libpcap[case].local_path, live.raw[case]["localPath"]):
        records = _window(live, path)
        assert all(r.caplen == min(r.length, 34) for r in records), \
            f"{path}: a record is not min(length, 34) long"
        assert helpers.keys(records) == helpers.keys(matching, 34), \
            f"{path}: the 34-byte limit changed which packets matched"


def test_files_open_in_tshark_and_dpkt(live):
    path = live.libpcap["everything"].local_path
    raw_path = live.raw["everything"]["localPath"]
    for capture in (path, raw_path):
        done = subprocess.run(["tshark", "-r", capture, "-T", "fields", "-e", "frame.number"],
                              capture_output=True, timeout=60)
        assert done.returncode == 0, f"tshark could not read {capture}: {done.stderr.decode()}"
        frames = len(done.stdout.split())
        with open(capture, "rb") as stream:
            reader = dpkt.pcap.Reader(stream)
            assert reader.datalink() == dpkt.pcap.DLT_EN10MB, "not Ethernet"
            parsed = [dpkt.ethernet.Ethernet(buf) for _, buf in reader]
        assert frames == len(parsed) == len(helpers.read_pcap(capture)) > 0, \
            f"{capture}: tshark saw {frames}, dpkt {len(parsed)}"
