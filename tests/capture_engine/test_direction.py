"""Local is the VM's side: live traffic both ways on a veth pair, and what loopback keeps."""
from __future__ import annotations

import collections
import socket
import threading
import time
from typing import Callable, Counter, Dict, List, Tuple

import dpkt
import pytest

from capture_engine.settings import parse_capture_settings
from tests.capture_engine import helpers, traffic
from tests.capture_engine.session_util import start_session

pytestmark = pytest.mark.root
BACKENDS = ["libpcap", "rawsocket"]
DATAGRAMS = 4
VM4, PEER4 = traffic.VM_V4[0], traffic.PEER_V4[0]
VM6, PEER6 = traffic.VM_V6[0], traffic.PEER_V6[0]
# label -> (sender, source, source port, destination, destination port): UDP, DATAGRAMS each.
UDP_FLOWS: Dict[str, Tuple[str, str, int, str, int]] = {
    "out from local 80": ("vm", VM4, 80, PEER4, 40080),
    "in to local 80": ("peer", PEER4, 40081, VM4, 80),
    "in from remote 80": ("peer", PEER4, 80, VM4, 6001),
    "out to remote 80": ("vm", VM4, 6002, PEER4, 80),
    "v6 out from local 80": ("vm", VM6, 80, PEER6, 40080),
    "v6 in from remote 80": ("peer", PEER6, 80, VM6, 6001),
}
# label -> (server side, server address, client address, client port): one TCP connection,
# whose packets go both ways.
TCP_FLOWS: Dict[str, Tuple[str, str, str, int]] = {
    "tcp peer to local 80": ("vm", VM4, PEER4, 40090),
    "tcp vm to remote 80": ("peer", PEER4, VM4, 40091),
}
EXPECTED = {
    "localPort=80": ({"localPort": "80"}, {"out from local 80", "in to local 80",
                                           "v6 out from local 80", "tcp peer to local 80"}),
    "remotePort=80": ({"remotePort": "80"}, {"in from remote 80", "out to remote 80",
                                             "v6 in from remote 80", "tcp vm to remote 80"}),
    "local-ip-and-both-ports": ({"protocol": "UDP", "localIPAddress": VM4, "localPort": "80",
                                 "remotePort": "40080-40081"},
                                {"out from local 80", "in to local 80"}),
}


def _label(packet: bytes, udp_flows: Dict[str, Tuple[str, str, int, str, int]]) -> str:
    ip = dpkt.ethernet.Ethernet(packet).data
    if not isinstance(ip, (dpkt.ip.IP, dpkt.ip6.IP6)) or \
            not isinstance(ip.data, (dpkt.udp.UDP, dpkt.tcp.TCP)):
        return "other"
    source = socket.inet_ntop(socket.AF_INET if isinstance(ip, dpkt.ip.IP) else
                              socket.AF_INET6, ip.src)
    if isinstance(ip.data, dpkt.tcp.TCP):
        for label, (_, _, _, client_port) in TCP_FLOWS.items():
            if {ip.data.sport, ip.data.dport} == {80, client_port}:
                return f"{label}, {'sent' if source == VM4 else 'received'}"
        return "other tcp"
    for label, (_, src, sport, _, dport) in udp_flows.items():
        if (source, ip.data.sport, ip.data.dport) == (src, sport, dport):
            return label
    return "other udp"


def _tcp(lab: traffic.Lab, server_side: str, server: str, client: str, port: int) -> None:
    listener = traffic.bound(lab, server_side, server, socket.SOCK_STREAM, 80)
    listener.listen(1)
    accepted: List[socket.socket] = []
    thread = threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True)
    thread.start()
    client_side = "peer" if server_side == "vm" else "vm"
    try:
        with traffic.bound(lab, client_side, client, socket.SOCK_STREAM, port) as sock:
            sock.connect((server, 80))
            sock.sendall(b"request")
            thread.join(5)
            accepted[0].sendall(b"reply")
            assert sock.recv(64) == b"reply"
    finally:
        for sock in accepted + [listener]:
            sock.close()


def _capture(lab: traffic.Lab, tmp_path, backend: str, filters: List[dict], interface: str,
             udp_flows: Dict[str, Tuple[str, str, int, str, int]], tcp: bool,
             started: Callable[[], None] = lambda: None) -> Counter:
    request = parse_capture_settings(
        {"name": "direction", "storageLocation": {"filePath": "direction.cap"},
         "filters": filters, "interfaces": [interface], "timeLimitInSeconds": 60},
        capture_root=str(tmp_path))
    running = start_session(lab, request, backend)
    try:
        started()
        for sender, src, sport, dst, dport in udp_flows.values():
            traffic.udp(lab, sender, src, sport, dst, dport, DATAGRAMS,
                        receiver="vm" if interface == "lo" else None)
        for server_side, server, client, port in TCP_FLOWS.values() if tcp else ():
            _tcp(lab, server_side, server, client, port)
        time.sleep(0.3)
    finally:
        running.stop.set()
    status = running.finish().querystatus()
    assert status["packetCaptureStatus"] == "Stopped", status
    records = helpers.read_pcap(status["localPath"])
    assert status["packetsCaptured"] == len(records), status
    return collections.Counter(_label(r.data, udp_flows) for r in records)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", list(EXPECTED))
def test_local_is_the_vms_side_of_traffic_both_ways(lab, tmp_path, backend, case):
    filters, flows = EXPECTED[case]
    got = _capture(lab, tmp_path, backend, [filters], lab.vm_if, UDP_FLOWS, tcp=True)
    wanted = (flows & set(UDP_FLOWS)) | {f"{flow}, {way}" for flow in flows & set(TCP_FLOWS)
                                         for way in ("sent", "received")}
    assert set(got) == wanted, f"{case}/{backend}: captured {dict(got)}, want {wanted}"
    for label in wanted & set(UDP_FLOWS):
        assert got[label] == DATAGRAMS, f"{case}/{backend}: {label}: {got[label]} packets"
    for label in wanted - set(UDP_FLOWS):  # SYN, ACK, request, FIN... / SYN-ACK, reply, FIN...
        assert got[label] >= 3, f"{case}/{backend}: {label}: only {got[label]} packets"


LOOPBACK_FLOWS = {"to local 80": ("vm", "127.0.0.1", 40082, "127.0.0.1", 80),
                  "from local 80": ("vm", "127.0.0.1", 80, "127.0.0.1", 6003)}


@pytest.mark.parametrize("backend", BACKENDS)
def test_loopback_keeps_each_packet_once_as_received(lab, tmp_path, backend):
    """On loopback the VM is both ends and the kernel shows every packet twice, sent then
    received: the sent copy is never kept (tcpdump does the same), the received one is
    matched as incoming (local = its destination)."""
    got = _capture(lab, tmp_path, backend, [{"localPort": "80"}], "lo", LOOPBACK_FLOWS,
                   tcp=False)
    assert got == {"to local 80": DATAGRAMS}, \
        f"{backend}: captured {dict(got)}: want the {DATAGRAMS} datagrams to local port 80, once"


def _flood(lab: traffic.Lab, stop: threading.Event, sent: List[int]) -> None:
    """Datagrams from the peer's port 80 to the VM's port 6001, as fast as Python sends them,
    until `stop` (at most 20 s)."""
    deadline = time.monotonic() + 20
    with traffic.bound(lab, "vm", VM4, socket.SOCK_DGRAM, 6001) as sink, \
            traffic.bound(lab, "peer", PEER4, socket.SOCK_DGRAM, 80) as sender:
        sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
        while not stop.is_set() and time.monotonic() < deadline:
            sender.sendto(b"wrong way", (VM4, 6001))
            sent[0] += 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_packet_enters_before_the_filter_reads_its_direction(lab, tmp_path, backend):
    """Traffic that matches only the wrong way round flows while the capture starts: the
    socket takes no packet before the direction-reading program is on it (libpcap binds to
    a protocol no frame carries until then)."""
    stop, sent = threading.Event(), [0]
    flood = threading.Thread(target=_flood, args=(lab, stop, sent), daemon=True)
    flood.start()
    try:
        while sent[0] < 100 and flood.is_alive():
            time.sleep(0.01)
        got = _capture(lab, tmp_path, backend, [{"localPort": "80"}], lab.vm_if,
                       {"out from local 80": UDP_FLOWS["out from local 80"]}, tcp=False,
                       started=stop.set)
    finally:
        stop.set()
        flood.join(25)
    assert sent[0] > 1000, f"only {sent[0]} datagrams flowed while the capture started"
    assert got == {"out from local 80": DATAGRAMS}, f"{backend}: captured {dict(got)}"
