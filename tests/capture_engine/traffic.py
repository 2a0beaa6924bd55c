"""A bounded, deterministic mix of TCP, UDP and ICMP between two test namespaces."""
from __future__ import annotations

import socket
import threading
from dataclasses import dataclass
from typing import List, Optional, Tuple

from capture_engine.interfaces import in_netns

VM_V4 = ("10.199.1.1", "10.199.1.10")
PEER_V4 = ("10.199.1.2", "10.199.1.3", "10.199.1.4")
VM_V6 = ("fd00:199:1::1",)
PEER_V6 = ("fd00:199:1::2", "fd00:199:1::3")
# (side listening, address, port) for TCP servers
TCP_SERVERS = [("peer", "10.199.1.2", 80), ("peer", "10.199.1.3", 443),
               ("peer", "10.199.1.2", 8080), ("peer", "fd00:199:1::2", 443),
               ("vm", "10.199.1.1", 22), ("vm", "10.199.1.10", 9000),
               ("vm", "fd00:199:1::1", 22)]
# (client side, client address, server address, server port)
TCP_CLIENTS = [("vm", "10.199.1.1", "10.199.1.2", 80), ("vm", "10.199.1.10", "10.199.1.3", 443),
               ("vm", "10.199.1.1", "10.199.1.2", 8080),
               ("vm", "fd00:199:1::1", "fd00:199:1::2", 443),
               ("peer", "10.199.1.2", "10.199.1.1", 22),
               ("peer", "10.199.1.4", "10.199.1.10", 9000),
               ("peer", "fd00:199:1::3", "fd00:199:1::1", 22)]
# (sender side, src address, src port, dst address, dst port, datagrams)
UDP_FLOWS = [("vm", "10.199.1.1", 40001, "10.199.1.2", 53, 3),
             ("vm", "10.199.1.10", 40002, "10.199.1.3", 5001, 3),
             ("vm", "10.199.1.1", 40003, "10.199.1.4", 5002, 2),
             ("vm", "fd00:199:1::1", 40004, "fd00:199:1::2", 53, 2),
             ("peer", "10.199.1.2", 53, "10.199.1.1", 40001, 3),
             ("peer", "10.199.1.3", 7000, "10.199.1.10", 6001, 2),
             ("peer", "10.199.1.4", 443, "10.199.1.1", 6000, 2),
             ("peer", "fd00:199:1::3", 5001, "fd00:199:1::1", 6000, 2)]
# (from side, destination)
VM_SECOND, PEER_SECOND = "10.199.2.1", "10.199.2.2"  # a second NIC of the VM
PINGS = [("vm", "10.199.1.2"), ("peer", "10.199.1.10"), ("vm", "fd00:199:1::2")]


@dataclass
class Lab:
    vm: object       # devtools.netns.Namespace where the capture runs
    peer: object
    vm_if: str


def _family(address: str) -> int:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def _sock(lab: Lab, side: str, address: str, kind: int, port: int = 0) -> socket.socket:
    with in_netns(getattr(lab, side).name):
        sock = socket.socket(_family(address), kind)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.settimeout(5)
    sock.bind((address, port))
    return sock


def bound(lab: Lab, side: str, address: str, kind: int, port: int = 0) -> socket.socket:
    """A socket of `side`'s namespace bound to address:port (5 s timeout)."""
    return _sock(lab, side, address, kind, port)


def udp(lab: Lab, side: str, src: str, sport: int, dst: str, dport: int, count: int,
        receiver: Optional[str] = None) -> None:
    """`count` datagrams src:sport -> dst:dport, each read by a socket of `receiver` (by
    default the other side) before the next is sent."""
    receiver = receiver or ("peer" if side == "vm" else "vm")
    with _sock(lab, receiver, dst, socket.SOCK_DGRAM, dport) as sink, \
            _sock(lab, side, src, socket.SOCK_DGRAM, sport) as sender:
        for n in range(count):
            sender.sendto(f"udp {src}:{sport}>{dst}:{dport} #{n}".encode(), (dst, dport))
            sink.recv(2048)


def _serve(server: socket.socket) -> None:
    try:
        conn, _ = server.accept()
        with conn:
            data = conn.recv(4096)
            conn.sendall(b"reply:" + data[:64])
            conn.recv(4096)  # until the client closes
    except OSError:
        pass
    finally:
        server.close()


def _tcp(lab: Lab) -> None:
    servers: List[threading.Thread] = []
    for side, address, port in TCP_SERVERS:
        server = _sock(lab, side, address, socket.SOCK_STREAM, port)
        server.listen(4)
        thread = threading.Thread(target=_serve, args=(server,), daemon=True)
        thread.start()
        servers.append(thread)
    for side, client_addr, server_addr, port in TCP_CLIENTS:
        with _sock(lab, side, client_addr, socket.SOCK_STREAM) as client:
            client.connect((server_addr, port))
            client.sendall(b"hello " * 20)
            client.recv(4096)
    for thread in servers:
        thread.join(6)


def _udp(lab: Lab) -> None:
    receivers = {}
    for side, _, _, dst, dport, _ in UDP_FLOWS:
        other = "peer" if side == "vm" else "vm"
        if (dst, dport) not in receivers:
            receivers[(dst, dport)] = _sock(lab, other, dst, socket.SOCK_DGRAM, dport)
    try:
        for side, src, sport, dst, dport, count in UDP_FLOWS:
            with _sock(lab, side, src, socket.SOCK_DGRAM, sport) as sender:
                for n in range(count):
                    sender.sendto(f"udp {src}:{sport}>{dst}:{dport} #{n}".encode(), (dst, dport))
                    receivers[(dst, dport)].recv(2048)
    finally:
        for sock in receivers.values():
            sock.close()


def _ping(lab: Lab) -> None:
    for side, target in PINGS:
        getattr(lab, side).run(["ping", "-c", "2", "-i", "0.2", "-W", "1", target], timeout=10)


def generate(lab: Lab) -> None:
    """Send the whole mix once (a few hundred packets, about a second)."""
    _tcp(lab)
    _udp(lab)
    _ping(lab)


def addresses() -> Tuple[List[str], List[str]]:
    vm = [f"{a}/24" for a in VM_V4] + [f"{a}/64" for a in VM_V6]
    peer = [f"{a}/24" for a in PEER_V4] + [f"{a}/64" for a in PEER_V6]
    return vm, peer


def blast(lab: Lab, count: int, size: int, port: int = 7777, interval: float = 0.0,
          stamps: list = None, vm_addr: str = VM_V4[0], peer_addr: str = PEER_V4[0]) -> None:
    """`count` UDP datagrams peer -> vm (bounded); `stamps` gets (seq, time after send)."""
    import time

    receiver = _sock(lab, "vm", vm_addr, socket.SOCK_DGRAM, port)
    receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    try:
        with _sock(lab, "peer", peer_addr, socket.SOCK_DGRAM, port) as sender:
            for seq in range(count):
                sender.sendto(seq.to_bytes(4, "big") + b"\0" * (size - 4), (vm_addr, port))
                if stamps is not None:
                    stamps.append((seq, time.time()))
                if interval:
                    time.sleep(interval)
    finally:
        receiver.close()
