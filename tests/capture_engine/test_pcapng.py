"""--pcapng: one Interface Description Block per NIC, each packet's Enhanced Packet Block names
the NIC that saw it; the byte limits count the file's real (larger) blocks.

Files are read back with dpkt's block classes and with tshark, never with our own reader.
"""
from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import time
from typing import Dict, List, Tuple

import dpkt
import pytest

from capture_engine.errors import InvalidLimitError
from capture_engine.output import STOP_BYTES, OutputPlan, Recorder
from capture_engine.pcapfile import RECORD_HEADER, FdSink
from capture_engine.pcapng import PcapngFormat
from devtools.netns import Topology, veth
from tests.capture_engine import craft, helpers
from tests.capture_engine.conftest import ROOT

NICS = ("eth0", "eth1")


def _records(frames: List[bytes], start_us: int = 1_700_000_000_000_000) -> bytes:
    out = b""
    for n, frame in enumerate(frames):
        ts = start_us + n * 1500
        out += RECORD_HEADER.pack(ts // 1_000_000, ts % 1_000_000, len(frame), len(frame)) + frame
    return out


def read_blocks(path: str) -> Tuple[List[str], List[Tuple[int, float, bytes]]]:
    """(interface names, [(interface id, timestamp, data)]) as dpkt reads the blocks."""
    with open(path, "rb") as stream:
        blob = stream.read()
    assert struct.unpack_from("<I", blob, 0)[0] == 0x0A0D0D0A, "not a pcapng file"
    names: List[str] = []
    packets = []
    offset = 0
    while offset < len(blob):
        kind, length = struct.unpack_from("<II", blob, offset)
        block = blob[offset:offset + length]
        assert len(block) == length and length % 4 == 0, f"bad block at {offset}"
        if kind == 1:
            idb = dpkt.pcapng.InterfaceDescriptionBlockLE(block)
            name = [o.data for o in idb.opts if o.code == 2]
            names.append(name[0].rstrip(b"\0").decode() if name else "")
            assert idb.linktype == 1, idb.linktype
        elif kind == 6:
            epb = dpkt.pcapng.EnhancedPacketBlockLE(block)
            ts = ((epb.ts_high << 32) | epb.ts_low) / 1e6
            packets.append((epb.iface_id, ts, bytes(epb.pkt_data[:epb.caplen])))
        offset += length
    return names, packets


def tshark_interfaces(path: str) -> List[Tuple[str, str]]:
    """(interface name, IP destination) of each packet, as tshark reads the file."""
    done = subprocess.run(["tshark", "-r", path, "-T", "fields", "-e", "frame.interface_name",
                           "-e", "ip.dst"], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    return [tuple(line.split("\t")) for line in done.stdout.decode().splitlines()]


def _recorder(tmp_path, limit: int, ring: int = 0) -> Recorder:
    fmt = PcapngFormat(NICS)
    plan = OutputPlan(str(tmp_path / "x.pcapng"), 262144, limit, ring)
    recorder = Recorder(plan, FdSink(fmt.file_header), fmt)
    recorder.start()
    return recorder


def test_each_packet_names_its_interface(tmp_path):
    recorder = _recorder(tmp_path, 1 << 20)
    a = [craft.ipv4("10.199.0.1", "10.199.0.2", craft.UDP, 1, 2)]
    b = [craft.ipv6("fd00:199::1", "fd00:199::2", craft.TCP, 3, 4), craft.arp()[:41]]
    recorder.accept_batch(_records(a), 1, "eth1")
    recorder.accept_batch(_records(b, 1_700_000_001_000_000), 2, "eth0")
    recorder.close()
    path = recorder.files[0]
    names, packets = read_blocks(path)
    assert names == list(NICS), names
    assert [(i, d) for i, _, d in packets] == [(1, a[0]), (0, b[0]), (0, b[1])], packets
    assert packets[0][1] == pytest.approx(1_700_000_000.0) and \
        packets[1][1] == pytest.approx(1_700_000_001.0), packets
    assert recorder.packets == 3 and recorder.bytes_written == os.path.getsize(path)
    with open(path, "rb") as stream:
        assert len(list(dpkt.pcapng.Reader(stream))) == 3
    assert [name for name, _ in tshark_interfaces(path)] == ["eth1", "eth0", "eth0"]


def test_byte_limit_counts_the_enhanced_packet_blocks(tmp_path):
    header = len(PcapngFormat(NICS).file_header(262144))
    frame = (craft.ipv4("10.199.0.1", "10.199.0.2", craft.UDP, 1, 2) + bytes(20))[:61]
    assert len(frame) == 61  # padded to 64
    block = 32 + 64
    limit = header + 2 * block + block - 1  # room for two blocks, one byte short of three
    recorder = _recorder(tmp_path, limit)
    recorder.accept_batch(_records([frame] * 5), 5, "eth0")
    recorder.close()
    size = os.path.getsize(recorder.files[0])
    assert size == header + 2 * block <= limit, (size, limit)
    assert recorder.packets == 2 and recorder.done_reason == STOP_BYTES
    assert recorder.bytes_written == size
    assert len(read_blocks(recorder.files[0])[1]) == 2


def test_ring_files_each_start_with_their_interfaces(tmp_path):
    header = len(PcapngFormat(NICS).file_header(262144))
    frame = craft.ipv4("10.199.0.1", "10.199.0.2", craft.UDP, 1, 2)  # 46 bytes -> 48
    recorder = _recorder(tmp_path, header + 2 * (32 + 48), ring=2)
    recorder.accept_batch(_records([frame] * 5), 5, "eth1")
    recorder.close()
    assert len(recorder.files) == 2 and recorder.deleted_count == 1, recorder.files
    for path in recorder.files:
        assert os.path.getsize(path) <= header + 2 * (32 + 48)
        names, packets = read_blocks(path)
        assert names == list(NICS) and packets and all(i == 1 for i, _, _ in packets)
    assert recorder.packets == 5


def test_limit_below_the_header_is_refused(tmp_path):
    with pytest.raises(InvalidLimitError) as caught:
        _recorder(tmp_path, 60)
    assert caught.value.code == 105 and "pcapng" in caught.value.message, caught.value.message


# -- live, two NICs ---------------------------------------------------------------------------
LINKS = {"nica": ("10.199.111.1", "10.199.111.2"), "nicb": ("10.199.112.1", "10.199.112.2")}


@pytest.fixture(scope="module")
def two_nics():
    if os.geteuid() != 0:
        pytest.skip("needs root")
    with Topology("of11") as topo:
        vm, peer = topo.namespace("vm"), topo.namespace("peer")
        for nic, (mine, theirs) in LINKS.items():
            veth(vm, nic, [f"{mine}/24"], peer, "p" + nic, [f"{theirs}/24"])
        yield vm, peer


def _send(ns, src: str, dst: str, count: int) -> None:
    with ns.enter():
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with sock:
        sock.bind((src, 0))
        for _ in range(count):
            sock.sendto(b"pcapng", (dst, 9))


@pytest.mark.root
@pytest.mark.parametrize("backend", ["libpcap", "rawsocket"])
def test_two_nic_capture_keeps_the_nic_of_each_packet(two_nics, tmp_path, backend):
    vm, peer = two_nics
    out = str(tmp_path / "two.pcapng")
    argv = [sys.executable, "-m", "capture_engine", "--netns", vm.name, "-i", "nica", "-i",
            "nicb", "-w", out, "--pcapng", "--backend", backend, "--json", "--time-limit", "60",
            "udp"]
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    helpers.wait_packet_socket(proc, vm.name, count=2)
    sent: Dict[str, int] = {}
    for n, (nic, (mine, theirs)) in enumerate(LINKS.items()):
        _send(peer, theirs, mine, 3 + n)        # received on the NIC
        _send(vm, mine, theirs, 5 + n)          # sent on it
        sent[nic] = 8 + 2 * n
    time.sleep(0.5)
    status = json.loads(helpers.stop_process(proc).decode())
    assert status["packetCaptureStatus"] == "Stopped" and status["backend"] == backend, status
    assert status["bytesWritten"] == os.path.getsize(out), status
    names, packets = read_blocks(out)
    assert sorted(names) == sorted(LINKS), names
    seen: Dict[str, int] = {}
    for iface, _, data in packets:
        ip = dpkt.ethernet.Ethernet(data).data
        nic = names[iface]
        assert socket.inet_ntoa(ip.dst) in LINKS[nic], f"{socket.inet_ntoa(ip.dst)} on {nic}"
        seen[nic] = seen.get(nic, 0) + 1
    assert seen == sent, (seen, sent)
    by_tshark = tshark_interfaces(out)
    assert len(by_tshark) == sum(sent.values())
    assert all(dst in LINKS[nic] for nic, dst in by_tshark), by_tshark


def test_memory_dumper_hands_over_each_batch_once():
    """The libpcap backend's pcapng path: pcap_dump into memory, taken batch by batch (a
    smaller batch after a larger one must not bring back the larger one's tail)."""
    import ctypes

    from capture_engine import pcaplib
    from capture_engine.pcapng import MemoryDumper

    lib = pcaplib.load()
    memory = MemoryDumper(lib, 262144)
    try:
        sizes = [[1500, 1500, 900], [60], [], [70, 80]]
        for n, batch in enumerate(sizes):
            want = b""
            for k, size in enumerate(batch):
                data = bytes([n * 16 + k]) * size
                header = pcaplib.PcapPkthdr(pcaplib.Timeval(n, k), size, size + 1)
                lib.pcap_dump(ctypes.cast(memory.dumper, ctypes.c_void_p), ctypes.byref(header),
                              data)
                want += RECORD_HEADER.pack(n, k, size, size + 1) + data
            assert memory.take() == want, f"batch {n}"
    finally:
        memory.close()
