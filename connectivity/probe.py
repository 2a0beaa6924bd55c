"""Single probes: timed non-blocking TCP connect and ICMP echo (HTTP(S): httpprobe.py)."""
from __future__ import annotations

import errno
import os
import select
import socket
import struct
import time
from dataclasses import dataclass
from typing import Any, Optional

from plumbing.crashpoints import crashpoint


class SourceBindError(OSError):
    """The requested source port could not be bound (EADDRINUSE, EACCES...)."""


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    outcome: str                 # "Connected", "Reply", "Timeout" or an errno name
    rtt_ms: Optional[float] = None  # the kernel's handshake RTT sample when there is one
    peer: str = ""               # who answered an ICMP error, when known
    wall_ms: Optional[float] = None  # connect() to writable, as seen from user space


TCPI_RTT_OFFSET = 68  # struct tcp_info: 8 bytes of u8 fields, then u32 rto ... rtt (linux/tcp.h)


def handshake_rtt_ms(sock: socket.socket) -> Optional[float]:
    """The kernel's RTT sample of the SYN -> SYN/ACK exchange (tcpi_rtt, microseconds).

    Right after connect() srtt holds exactly the first sample; it excludes the time this
    process waited to be scheduled, which on a busy VM is larger than the RTT itself.
    Zero (no sample, e.g. a retransmitted SYN under Karn's rule) means unknown.
    """
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    except OSError:
        return None
    if len(info) < TCPI_RTT_OFFSET + 4:
        return None
    micros = struct.unpack_from("I", info, TCPI_RTT_OFFSET)[0]
    return micros / 1000.0 if micros else None


SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # linux/asm-generic/socket.h


def enable_rx_timestamps(sock: socket.socket) -> None:
    """Ask the kernel to stamp each received packet: RTTs then exclude our wake-up delay."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    except OSError:
        pass


def recv_stamped(sock: socket.socket, size: int) -> tuple[bytes, Any, float]:
    """Data, peer, and the kernel's receive time on the time.time() scale (else now)."""
    data, ancillary, _flags, peer = sock.recvmsg(size, 64)
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(payload) >= 16:
            seconds, nanos = struct.unpack("qq", payload[:16])
            return data, peer, seconds + nanos / 1e9
    return data, peer, time.time()


def errno_name(code: int) -> str:
    return errno.errorcode.get(code, f"errno{code}")


def _family(addr: str) -> int:
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def tcp_connect(addr: str, port: int, source_port: Optional[int],
                timeout: float) -> tuple[ProbeResult, Optional[socket.socket]]:
    """Time a TCP handshake; on success return the open socket (the caller aborts it)."""
    crashpoint("connectivity.check.connect")
    sock = socket.socket(_family(addr), socket.SOCK_STREAM)
    try:
        if source_port:
            try:
                sock.bind(("", source_port))
            except OSError as exc:
                raise SourceBindError(exc.errno, exc.strerror) from exc
        sock.setblocking(False)
        poller = select.poll()
        poller.register(sock, select.POLLOUT)
        started = time.perf_counter()
        code = sock.connect_ex((addr, port))
        if code not in (0, errno.EINPROGRESS):
            sock.close()
            return ProbeResult(False, errno_name(code)), None
        ready = poller.poll(timeout * 1000.0)
        elapsed = (time.perf_counter() - started) * 1000.0
        if not ready:
            abort(sock)
            return ProbeResult(False, "Timeout"), None
        code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            sock.close()
            return ProbeResult(False, errno_name(code)), None
        kernel = handshake_rtt_ms(sock)
        return ProbeResult(True, "Connected", kernel if kernel is not None else elapsed,
                           wall_ms=elapsed), sock
    except BaseException:
        sock.close()
        raise


def abort(sock: socket.socket) -> None:
    """Close with RST: leaves no TIME_WAIT, so a fixed source port is reusable at once."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


def tcp_probe(addr: str, port: int, source_port: Optional[int], timeout: float) -> ProbeResult:
    result, sock = tcp_connect(addr, port, source_port, timeout)
    if sock is not None:
        abort(sock)
    return result


class IcmpEcho:
    """ICMP echo through a ping socket when allowed, else a raw socket (root)."""

    def __init__(self, addr: str) -> None:
        self.addr = addr
        self.v6 = ":" in addr
        proto = socket.IPPROTO_ICMPV6 if self.v6 else socket.IPPROTO_ICMP
        try:
            self.sock = socket.socket(_family(addr), socket.SOCK_DGRAM, proto)
            self.raw = False
        except OSError:
            self.sock = socket.socket(_family(addr), socket.SOCK_RAW, proto)
            self.raw = True
        self.ident = struct.unpack("!H", os.urandom(2))[0]
        enable_rx_timestamps(self.sock)

    def close(self) -> None:
        self.sock.close()

    def probe(self, seq: int, timeout: float) -> ProbeResult:
        crashpoint("connectivity.check.echo")
        kind = 128 if self.v6 else 8
        packet = _icmp(kind, self.ident, seq, b"connectivity-check")
        # `timeout` is this echo's share of the check's deadline (the injected clock); it is
        # spent in the kernel's recv, so it is counted in real time.
        deadline = time.perf_counter() + timeout
        sent = time.time()
        try:
            self.sock.sendto(packet, (self.addr, 0))
        except OSError as exc:
            return ProbeResult(False, errno_name(exc.errno or 0))
        while True:
            left = deadline - time.perf_counter()
            if left <= 0 or not select.select([self.sock], [], [], left)[0]:
                return ProbeResult(False, "Timeout")
            data, peer, received = recv_stamped(self.sock, 2048)
            got = self._match(data, seq)
            if got == "Reply" and peer[0] == self.addr:
                return ProbeResult(True, "Reply", max(0.0, received - sent) * 1000.0)
            if got and got != "Reply":
                return ProbeResult(False, got, peer=peer[0])

    def _match(self, data: bytes, seq: int) -> str:
        if self.raw and not self.v6:
            data = data[(data[0] & 0x0F) * 4:]
        if len(data) < 8:
            return ""
        kind, code = data[0], data[1]
        ident, got_seq = struct.unpack("!HH", data[4:8])
        if kind in (0, 129) and got_seq == seq and (ident == self.ident or not self.raw):
            return "Reply"
        if self.raw and kind in ((1, 3) if self.v6 else (3, 11)):
            inner = data[8:]
            skip = 40 if self.v6 else (inner[0] & 0x0F) * 4 if inner else 0
            quoted = inner[skip:skip + 8]
            if len(quoted) == 8 and struct.unpack("!HH", quoted[4:8]) == (self.ident, seq):
                return f"ICMP type {kind} code {code}"
        return ""


def _icmp(kind: int, ident: int, seq: int, payload: bytes) -> bytes:
    header = struct.pack("!BBHHH", kind, 0, 0, ident, seq)
    return header[:2] + struct.pack("!H", checksum(header + payload)) + header[4:] + payload


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    words: tuple[int, ...] = struct.unpack(f"!{len(data) // 2}H", data)
    total = sum(words)
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF
