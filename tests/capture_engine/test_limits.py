"""Exact limits on live traffic: byte cap, time limit with drain, ring of files, disk full."""
from __future__ import annotations

import os
import subprocess
import threading
import time

import pytest

from capture_engine.settings import parse_capture_settings
from tests.capture_engine import helpers, traffic
from tests.capture_engine.session_util import start_session

pytestmark = pytest.mark.root
BACKENDS = ["libpcap", "rawsocket"]


def _settings(name, **extra):
    base = {"name": name, "storageLocation": {"filePath": f"{name}.cap"}, "interfaces": ["cap0"]}
    base.update(extra)
    return {k: v for k, v in base.items() if v is not None}


def _contiguous_in(ours, ref):
    """Index in `ref` where the records of `ours` appear as one contiguous run."""
    datas = [r.data for r in ref]
    start = datas.index(ours[0].data)
    assert datas[start:start + len(ours)] == [r.data for r in ours], \
        "the capture is not a contiguous run of the reference capture"
    return start


@pytest.mark.parametrize("backend", BACKENDS)
def test_byte_cap_is_never_exceeded_and_next_record_would_cross(lab, tmp_path, backend):
    cap = 3000
    request = parse_capture_settings(_settings("cap", totalBytesPerSession=cap),
                                     capture_root=str(tmp_path))
    ref = helpers.start_tcpdump(lab.vm, lab.vm_if, str(tmp_path / "ref.pcap"))
    running = start_session(lab, request, backend)
    traffic.generate(lab)
    result = running.finish()
    helpers.stop_process(ref)
    assert result.stop_reason == "ByteLimitReached", result.querystatus()
    size = os.path.getsize(result.local_path)
    assert size <= cap, f"file is {size} bytes, over the {cap}-byte cap"
    ours, reference = helpers.read_pcap(result.local_path), helpers.read_pcap(str(tmp_path /
                                                                                 "ref.pcap"))
    start = _contiguous_in(ours, reference)
    following = reference[start + len(ours)]
    assert size + 16 + following.caplen > cap, \
        f"the next packet ({16 + following.caplen} bytes) would still have fit in {cap - size}"
    assert result.bytes_written == size and result.packets_captured == len(ours)


@pytest.mark.parametrize("backend", BACKENDS)
def test_time_limit_keeps_every_packet_sent_before_the_deadline(lab, tmp_path, backend):
    request = parse_capture_settings(
        _settings("timed", timeLimitInSeconds=2, filters=[{"protocol": "UDP",
                                                           "localPort": "7777"}]),
        capture_root=str(tmp_path))
    stamps = []
    sender = threading.Thread(target=traffic.blast, args=(lab, 1200, 64, 7777, 0.0025, stamps))
    sender.start()
    time.sleep(0.3)
    running = start_session(lab, request, backend)
    result = running.finish()
    sender.join(20)
    assert result.stop_reason == "TimeExceeded", result.querystatus()
    deadline = result.capture_start_time.timestamp() + 2
    records = helpers.read_pcap(result.local_path)
    captured = {int.from_bytes(r.data[42:46], "big") for r in records}
    before = [seq for seq, sent in stamps if sent < deadline]
    before_set = set(before)
    assert before and stamps[-1][1] > deadline, "the sender did not outlast the time limit"
    assert before[-1] in captured, f"the last packet sent before the deadline (#{before[-1]}) " \
        "is missing"
    # Every packet sent once the session reported Running (it was capturing by then).
    lost = [seq for seq, sent in stamps if seq in before_set and seq not in captured and
            sent > running.running_at]
    assert not lost, f"packets sent before the deadline are missing: {lost[:10]}"
    assert max(r.ts_us for r in records) <= (deadline + 0.01) * 1e6, \
        "a packet stamped after the deadline was kept"


@pytest.mark.parametrize("backend", BACKENDS)
def test_ring_of_files_rotates_at_record_boundaries_and_deletes_the_oldest(lab, tmp_path,
                                                                           backend):
    request = parse_capture_settings(
        {"name": "ring", "continuousCapture": True, "storageLocation": {"localPath": "ring.cap"},
         "interfaces": ["cap0"],
         "captureSettings": {"fileCount": 3, "fileSizeInBytes": 2000}},
        capture_root=str(tmp_path))
    ref = helpers.start_tcpdump(lab.vm, lab.vm_if, str(tmp_path / "ref.pcap"))
    running = start_session(lab, request, backend)
    traffic.generate(lab)
    time.sleep(0.3)
    running.stop.set()
    result = running.finish()
    helpers.stop_process(ref)
    kept = sorted(p for p in os.listdir(tmp_path) if p.startswith("ring_"))
    assert len(kept) == 3, f"expected the 3 newest files of the ring, found {kept}"
    numbers = [int(name[5:10]) for name in kept]
    assert numbers[0] > 1 and numbers == list(range(numbers[0], numbers[0] + 3)), numbers
    assert [os.path.basename(p) for p in result.local_files] == kept, result.querystatus()
    files = [helpers.read_pcap(str(tmp_path / name)) for name in kept]
    for name, nxt in zip(kept, files[1:]):
        size = os.path.getsize(tmp_path / name)
        assert size <= 2000 and size + 16 + nxt[0].caplen > 2000, \
            f"{name} ({size} bytes) rotated before it was full"
    reference = helpers.read_pcap(str(tmp_path / "ref.pcap"))
    _contiguous_in([r for records in files for r in records], reference)
    done = subprocess.run(["tshark", "-r", str(tmp_path / kept[0])], capture_output=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr.decode()


@pytest.mark.parametrize("backend", BACKENDS)
def test_disk_full_keeps_what_was_written_and_says_so(lab, tiny_fs, backend):
    request = parse_capture_settings(_settings("full"), capture_root=tiny_fs)
    running = start_session(lab, request, backend)
    traffic.blast(lab, 600, 1000, 7001, 0.0005)
    result = running.finish()
    status = result.querystatus()
    assert status["packetCaptureStatus"] == "Error" and status["stopReason"] == "DiskFull", \
        status
    assert status["packetCaptureError"] == ["LocalFileFailed"] and status["errorCode"] == 130
    records = helpers.read_pcap(result.local_path)  # asserts every record is complete
    assert len(records) == status["packetsCaptured"] > 50, status
    assert os.path.getsize(result.local_path) == status["bytesWritten"]
    assert result.local_path in status["errorMessage"], status["errorMessage"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_up_nic_by_default_merged_into_one_file(lab, tmp_path, backend):
    request = parse_capture_settings(_settings("multi", interfaces=None),
                                     capture_root=str(tmp_path))
    dumps = {name: helpers.start_tcpdump(lab.vm, name, str(tmp_path / f"{name}.pcap"))
             for name in ("cap0", "cap1")}
    running = start_session(lab, request, backend)
    start = time.time()
    traffic.generate(lab)
    traffic.blast(lab, 40, 200, 7003, 0.001, vm_addr=traffic.VM_SECOND,
                  peer_addr=traffic.PEER_SECOND)
    end = time.time()
    time.sleep(0.3)
    running.stop.set()
    result = running.finish()
    for proc in dumps.values():
        helpers.stop_process(proc)
    assert result.interfaces == ("cap0", "cap1"), result.querystatus()
    expected = sum((helpers.keys(helpers.in_window(helpers.read_pcap(str(tmp_path /
                                                                         f"{name}.pcap")),
                                                   start, end + 0.2))
                    for name in dumps), helpers.keys([]))
    got = helpers.keys(helpers.in_window(helpers.read_pcap(result.local_path), start,
                                         end + 0.2))
    assert got == expected, f"missing {helpers.describe(expected - got)}; " \
        f"extra {helpers.describe(got - expected)}"
    assert sum(1 for (data, _) in got if data[30:34] == bytes([10, 199, 2, 1])) >= 40, \
        "nothing from the second NIC"


@pytest.mark.parametrize("backend", BACKENDS)
def test_interface_removed_mid_capture_ends_with_interface_down(lab, tmp_path, backend):
    lab.vm.ip("link", "add", "gone0", "type", "veth", "peer", "name", "gone1")
    lab.vm.ip("link", "set", "gone0", "up")
    lab.vm.ip("link", "set", "gone1", "up")
    request = parse_capture_settings(_settings("gone", interfaces=["gone0"]),
                                     capture_root=str(tmp_path))
    running = start_session(lab, request, backend)
    lab.vm.ip("link", "del", "gone0")
    result = running.finish()
    status = result.querystatus()
    assert status["stopReason"] == "InterfaceDown" and status["packetCaptureStatus"] == "Error", \
        status
    assert status["errorCode"] == 121 and status["packetCaptureError"] == ["CaptureFailed"]
    assert "gone0" in status["errorMessage"], status["errorMessage"]
    helpers.read_pcap(result.local_path)  # what was written is a valid file
