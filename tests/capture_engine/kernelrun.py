"""Run classic BPF programs in the kernel on crafted frames, as sent and as received.

A veth pair inside a test namespace: a frame sent on one end passes that end's packet
sockets as outgoing (pkt_type PACKET_OUTGOING, what `outbound` reads) and the other end's as
received. Each frame's source MAC is replaced by its index, so every copy a socket keeps names
its frame (the programs never read MAC addresses).
"""
from __future__ import annotations

import contextlib
import ctypes
import socket
import struct
import time
from typing import Dict, Iterator, List, Sequence

from devtools.netns import Namespace

ETH_P_ALL = 0x0003
SO_ATTACH_FILTER, SO_RCVBUFFORCE = 26, 33
RCVBUF = 64 << 20
TAG = b"\x02\xcf"  # source MAC = 02:cf + the frame's index (4 bytes)
SENT, RECEIVED = "sent", "received"
ACCEPT_ALL = [(0x06, 0, 0, 0x40000)]


def attach(sock: socket.socket, program: Sequence[tuple]) -> None:
    insns = b"".join(struct.pack("<HBBI", *insn) for insn in program)
    buffer = ctypes.create_string_buffer(insns, len(insns))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER,
                    struct.pack("HL", len(program), ctypes.addressof(buffer)))


class KernelRun:
    """The pair `<prefix>a` / `<prefix>b` in `ns` (no addresses, IPv6 off: no traffic of its
    own); `lengths()` runs programs on it."""

    def __init__(self, ns: Namespace, prefix: str = "kr") -> None:
        self.ns, self.near, self.far = ns, prefix + "a", prefix + "b"
        ns.run(["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"])
        ns.ip("link", "add", self.near, "type", "veth", "peer", "name", self.far)
        for name in (self.near, self.far):
            ns.ip("link", "set", name, "up")
        # Until the kernel's link watch marks both ends UP (it may wait a second, longer while
        # other tests churn interfaces) the pair's queue is the no-op one: every frame sent is
        # dropped (a CI run saw 0 of 805 frames go through).
        deadline = time.monotonic() + 15
        while any("state UP" not in ns.ip("-o", "link", "show", name)
                  for name in (self.near, self.far)):
            assert time.monotonic() < deadline, f"{self.near}/{self.far} never came up"
            time.sleep(0.05)

    def _socket(self, interface: str, program: Sequence[tuple]) -> socket.socket:
        with self.ns.enter():
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
        attach(sock, program)
        sock.bind((interface, ETH_P_ALL))
        return sock

    def lengths(self, program: Sequence[tuple],
                frames: Sequence[bytes]) -> Dict[str, List[int]]:
        """What the kernel keeps of each frame (0 = dropped), sent and received."""
        with contextlib.ExitStack() as stack:
            # Bound first, so each copy reaches it after the sockets under test.
            witness = stack.enter_context(self._socket(self.far, ACCEPT_ALL))
            sent = stack.enter_context(self._socket(self.near, program))
            received = stack.enter_context(self._socket(self.far, program))
            with self.ns.enter():
                sender = stack.enter_context(socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0))
            sender.bind((self.near, 0))
            for index, frame in enumerate(frames):
                sender.send(frame[:6] + TAG + index.to_bytes(4, "big") + frame[12:])
            seen = _drain(witness, len(frames), wait=True)
            assert len(seen) == len(frames), f"{len(seen)} of {len(frames)} frames went through"
            kept = {SENT: _drain(sent, len(frames)), RECEIVED: _drain(received, len(frames))}
        return {way: [by_index.get(i, 0) for i in range(len(frames))]
                for way, by_index in kept.items()}


def _drain(sock: socket.socket, count: int, wait: bool = False) -> Dict[int, int]:
    """Frame index -> length kept, for the tagged frames queued on `sock`."""
    found: Dict[int, int] = {}
    sock.settimeout(5 if wait else 0)
    with contextlib.suppress(BlockingIOError, socket.timeout):
        while not wait or len(found) < count:
            data = sock.recv(1 << 18)
            if data[6:8] == TAG:
                index = int.from_bytes(data[8:12], "big")
                assert index not in found, f"frame {index} kept twice"
                found[index] = len(data)
    return found


@contextlib.contextmanager
def kernel_run(name: str) -> Iterator[KernelRun]:
    """A namespace of its own with the pair in it."""
    ns = Namespace(name)
    try:
        yield KernelRun(ns)
    finally:
        ns.close()
