"""Hop discovery by TTL-limited TCP SYN or ICMP echo probes with a constant flow identity."""
from __future__ import annotations

import os
import select
import socket
import struct
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Optional

from connectivity.deadline import Deadline
from connectivity.probe import checksum, enable_rx_timestamps, errno_name, recv_stamped

WINDOW = 4          # TTLs probed together; the next window only if the destination is not met


@dataclass(frozen=True)
class TraceSettings:
    max_hops: int = 16
    per_hop: int = 3
    timeout: float = 1.0


def windows(settings: TraceSettings) -> int:
    """How many windows of TTLs a trace may send: each waits at most settings.timeout."""
    return -(-settings.max_hops // WINDOW)


@dataclass
class TtlRecord:
    sent: int = 0
    replies: list[tuple[str, float, str]] = field(default_factory=list)  # address, rtt, kind

    def address(self) -> str:
        if not self.replies:
            return ""
        return Counter(r[0] for r in self.replies).most_common(1)[0][0]


@dataclass
class Trace:
    records: dict[int, TtlRecord] = field(default_factory=dict)
    reached_ttl: Optional[int] = None
    destination_answer: str = ""        # "SYN/ACK", "RST", "EchoReply"
    stop_reason: str = ""               # an ICMP unreachable seen on the way
    send_errors: Counter[str] = field(default_factory=Counter)  # errno name -> sends


class Tracer:
    """IPv4 probes: TCP SYNs share addresses and ports (Paris-style), only the sequence varies."""

    def __init__(self, src: str, dst: str, port: int, sport: int, icmp: bool,
                 settings: TraceSettings = TraceSettings()) -> None:
        self.src, self.dst, self.port, self.sport, self.icmp = src, dst, port, sport, icmp
        self.settings = settings
        self.base = struct.unpack("!I", os.urandom(4))[0] & 0x7FFFFFFF
        self.ident = struct.unpack("!H", os.urandom(2))[0]
        self.pending: dict[int, tuple[int, float]] = {}   # probe number -> ttl, sent time
        self.trace = Trace()

    def run(self, deadline: Optional[Deadline] = None) -> Trace:
        """Windows of TTLs until the destination answers; none starts after `deadline`."""
        deadline = deadline or Deadline.after(windows(self.settings) * self.settings.timeout)
        proto = socket.IPPROTO_ICMP if self.icmp else socket.IPPROTO_TCP
        with socket.socket(socket.AF_INET, socket.SOCK_RAW, proto) as out, \
                socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as icmp:
            listen = [icmp] if self.icmp else [out, icmp]
            for sock in listen:
                enable_rx_timestamps(sock)
            number = 0
            for first in range(1, self.settings.max_hops + 1, WINDOW):
                if deadline.expired:
                    break
                last = min(first + WINDOW - 1, self.settings.max_hops)
                for ttl in range(first, last + 1):
                    for _ in range(self.settings.per_hop):
                        self._send(out, ttl, number)
                        number += 1
                self._collect(listen, deadline.within(self.settings.timeout))
                if self.trace.reached_ttl or self.trace.stop_reason:
                    break
                if sum(self.trace.send_errors.values()) >= number:
                    break  # nothing leaves this host: more TTLs cannot help
        return self.trace

    def _send(self, sock: socket.socket, ttl: int, number: int) -> None:
        record = self.trace.records.setdefault(ttl, TtlRecord())
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
        record.sent += 1
        packet = self._packet(number)
        # Stamp before sending: on a veth the answer can arrive before sendto() returns.
        sent = time.time()  # the kernel's receive stamps use this scale
        try:
            sock.sendto(packet, (self.dst, 0))
        except OSError as exc:
            self.trace.send_errors[errno_name(exc.errno or 0)] += 1
            return
        self.pending[number] = (ttl, sent)

    def _packet(self, number: int) -> bytes:
        if self.icmp:
            seq = number & 0xFFFF
            # The filler word cancels seq in the checksum: the ICMP checksum stays constant too.
            body = struct.pack("!HH", self.ident, seq) + struct.pack("!H", 0xFFFF - seq)
            head = struct.pack("!BBH", 8, 0, 0)
            return head[:2] + struct.pack("!H", checksum(head + body)) + body
        seq = (self.base + number) & 0xFFFFFFFF
        header = struct.pack("!HHIIBBHHH", self.sport, self.port, seq, 0, 5 << 4, 0x02, 64240,
                             0, 0)
        pseudo = socket.inet_aton(self.src) + socket.inet_aton(self.dst) + struct.pack(
            "!BBH", 0, socket.IPPROTO_TCP, len(header))
        return header[:16] + struct.pack("!H", checksum(pseudo + header)) + header[18:]

    def _collect(self, socks: list[socket.socket], deadline: Deadline) -> None:
        while self.pending:
            left = deadline.left()
            if left <= 0:
                break
            for sock in select.select(socks, [], [], left)[0]:
                data, _, received = recv_stamped(sock, 4096)
                self._match(data, received)
        self.pending.clear()

    def _match(self, data: bytes, now: float) -> None:
        ihl = (data[0] & 0x0F) * 4
        src = socket.inet_ntoa(data[12:16])
        proto, body = data[9], data[ihl:]
        if proto == socket.IPPROTO_TCP and src == self.dst and len(body) >= 14:
            sport, dport, _seq, ack = struct.unpack("!HHII", body[:12])
            if (sport, dport) == (self.port, self.sport):
                answer = "SYN/ACK" if body[13] & 0x12 == 0x12 else "RST"
                self._answer((ack - 1 - self.base) & 0xFFFFFFFF, src, now, answer)
        elif proto == socket.IPPROTO_ICMP and len(body) >= 8:
            self._icmp(body, src, now)

    def _icmp(self, body: bytes, src: str, now: float) -> None:
        kind, code = body[0], body[1]
        if kind == 0 and self.icmp:
            ident, seq = struct.unpack("!HH", body[4:8])
            if ident == self.ident and src == self.dst:
                self._answer(seq, src, now, "EchoReply")
            return
        if kind not in (3, 11) or len(body) < 36:
            return
        inner = body[8:]
        inner_ihl = (inner[0] & 0x0F) * 4
        if socket.inet_ntoa(inner[16:20]) != self.dst:
            return
        quoted = inner[inner_ihl:inner_ihl + 8]
        if len(quoted) < 8:
            return
        if self.icmp:
            ident, number = struct.unpack("!HH", quoted[4:8])
            if ident != self.ident:
                return
        else:
            sport, dport, seq = struct.unpack("!HHI", quoted)
            if (sport, dport) != (self.sport, self.port):
                return
            number = (seq - self.base) & 0xFFFFFFFF
        if kind == 11:
            self._answer(number, src, now, "TimeExceeded")
        elif src != self.dst or self.icmp:
            self._answer(number, src, now, f"Unreachable(code {code})")
            self.trace.stop_reason = f"ICMP destination unreachable code {code} from {src}"

    def _answer(self, number: int, src: str, now: float, kind: str) -> None:
        entry = self.pending.pop(number, None)
        if entry is None:
            return
        ttl, sent = entry
        self.trace.records[ttl].replies.append((src, max(0.0, now - sent) * 1000.0, kind))
        closer = self.trace.reached_ttl is None or ttl < self.trace.reached_ttl
        if kind in ("SYN/ACK", "RST", "EchoReply") and closer:
            self.trace.reached_ttl = ttl
            self.trace.destination_answer = kind
