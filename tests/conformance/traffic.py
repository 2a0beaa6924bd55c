"""Bounded, labelled traffic from a peer to the VM, and which of it a pcap file holds."""
from __future__ import annotations

import io
import socket
from typing import Dict, FrozenSet, Set, Tuple

import dpkt

from devtools.netns import Namespace
from plumbing.netns import in_netns

VM, PEER = "10.199.71.1", "10.199.71.2"
# label -> (protocol, peer port, VM port). "Local" in a filter is the VM's side.
FLOWS: Dict[str, Tuple[str, int, int]] = {
    "udp 40001>80": ("udp", 40001, 80),
    "udp 40002>100": ("udp", 40002, 100),
    "udp 40003>5000": ("udp", 40003, 5000),
    "udp 80>6001": ("udp", 80, 6001),
    "udp 100>6002": ("udp", 100, 6002),
    "tcp 40006>80": ("tcp", 40006, 80),      # refused: SYN, then the VM's RST
    "tcp 40007>5000": ("tcp", 40007, 5000),  # refused
}
ALL: FrozenSet[str] = frozenset(FLOWS)
OTHER = "other"  # ARP, ICMP port unreachable...: only a filter with no port or protocol
DATAGRAMS = 3


def send_flows(peer: Namespace) -> None:
    """Every flow once, from this thread inside the peer's namespace (no process to start, so
    it fits well inside a short time limit): 3 datagrams per UDP flow, one refused connection
    per TCP flow."""
    with in_netns(peer.name):
        for proto, peer_port, vm_port in FLOWS.values():
            kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
            with socket.socket(socket.AF_INET, kind) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((PEER, peer_port))
                sock.settimeout(2)
                if proto == "udp":
                    for index in range(DATAGRAMS):
                        sock.sendto(b"conformance-%d" % index, (VM, vm_port))
                    continue
                try:
                    sock.connect((VM, vm_port))
                except OSError:
                    pass  # refused: the SYN and the VM's RST are the flow


def flow_of(packet: bytes) -> str:
    frame = dpkt.ethernet.Ethernet(packet)
    ip = frame.data
    if not isinstance(ip, dpkt.ip.IP) or not isinstance(ip.data, (dpkt.udp.UDP, dpkt.tcp.TCP)):
        return OTHER
    proto = "udp" if isinstance(ip.data, dpkt.udp.UDP) else "tcp"
    ports = {(ip.data.sport, ip.data.dport), (ip.data.dport, ip.data.sport)}
    for label, (flow_proto, peer_port, vm_port) in FLOWS.items():
        if flow_proto == proto and (peer_port, vm_port) in ports:
            return label
    return OTHER


def flows_in(pcap: bytes) -> Tuple[Set[str], int]:
    """The flow labels of a pcap file's packets, and how many packets it holds."""
    packets = [data for _, data in dpkt.pcap.Reader(io.BytesIO(pcap))]
    return {flow_of(data) for data in packets}, len(packets)
