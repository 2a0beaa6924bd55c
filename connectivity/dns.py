"""A small stub resolver that reports per-server answers, timings and failures (RFC 1035)."""
from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

from connectivity.deadline import Deadline
from connectivity.dnswire import QTYPES, RCODES, MalformedReply, build_query, parse_reply

__all__ = ["RCODES", "QTYPES", "Resolution", "ResolverConfig", "ServerAttempt", "describe",
           "query", "resolve"]

MAX_SERVER_TIMEOUT = 2.0  # glibc's default is 5 s per try: too slow for a bounded check
DNS_BUDGET = 6.0          # every server, both record types, TCP fallbacks: the whole resolution


@dataclass(frozen=True)
class ServerAttempt:
    server: str
    qtype: str
    outcome: str            # an RCODE name, "Timeout", "Error" or "Malformed"
    answers: tuple[str, ...]
    elapsed_ms: float
    error: str = ""
    transport: str = "udp"  # "tcp" after a truncated (TC) UDP reply


@dataclass(frozen=True)
class Resolution:
    name: str
    addresses: tuple[str, ...]
    source: str                         # "literal", "/etc/hosts" or "dns"
    attempts: tuple[ServerAttempt, ...] = ()
    failure: str = ""  # NXDOMAIN, SERVFAIL, Timeout, NoAddress, MalformedReply, NoNameservers
    budget_spent: bool = False          # the DNS budget ran out before every server was asked

    @property
    def server(self) -> str:
        return self.attempts[-1].server if self.attempts else ""


@dataclass(frozen=True)
class ResolverConfig:
    nameservers: tuple[str, ...]
    timeout: float

    @classmethod
    def load(cls, path: str = "/etc/resolv.conf") -> ResolverConfig:
        servers: list[str] = []
        timeout = 5.0
        try:
            with open(path, encoding="utf-8") as handle:
                lines = handle.read().splitlines()
        except OSError:
            lines = []
        for line in lines:
            words = line.split("#")[0].split()
            if len(words) >= 2 and words[0] == "nameserver" and len(servers) < 3:
                servers.append(words[1])
            elif words[:1] == ["options"]:
                for opt in words[1:]:
                    if opt.startswith("timeout:") and opt[8:].isascii() and opt[8:].isdigit():
                        timeout = float(opt[8:])
        return cls(tuple(servers), min(max(timeout, 0.1), MAX_SERVER_TIMEOUT))


def resolve(name: str, version: Optional[str] = None, config: Optional[ResolverConfig] = None,
            hosts_path: str = "/etc/hosts", deadline: Optional[Deadline] = None) -> Resolution:
    """Resolve like glibc's files-then-dns, keeping each server's answer as evidence.

    Every query waits at most the per-server timeout and all of them together at most
    `deadline` (DNS_BUDGET from now when not given).
    """
    try:
        return Resolution(name, (str(ipaddress.ip_address(name)),), "literal")
    except ValueError:
        pass
    from_hosts = _hosts_lookup(name, version, hosts_path)
    if from_hosts:
        return Resolution(name, from_hosts, "/etc/hosts")
    config = config or ResolverConfig.load()
    if not config.nameservers:
        return Resolution(name, (), "dns", failure="NoNameservers")
    deadline = deadline or Deadline.after(DNS_BUDGET)
    qtypes = {"IPv4": ["A"], "IPv6": ["AAAA"]}.get(version or "", ["A", "AAAA"])
    attempts: list[ServerAttempt] = []
    for qtype in qtypes:
        for server in config.nameservers:
            if deadline.expired:
                return _failed(name, attempts, budget_spent=True)
            attempt = query(server, name, qtype, config.timeout, deadline)
            attempts.append(attempt)
            if attempt.answers:
                return Resolution(name, attempt.answers, "dns", tuple(attempts))
            if attempt.outcome in ("NXDOMAIN", "NOERROR"):
                break  # an authoritative "no": other servers would say the same
        if attempts[-1].outcome == "NXDOMAIN" or all(a.outcome == "Timeout" for a in attempts):
            break  # AAAA after all servers timed out on A would only double the wait
    return _failed(name, attempts)


def _failed(name: str, attempts: list[ServerAttempt], budget_spent: bool = False) -> Resolution:
    outcomes = [a.outcome for a in attempts]
    failure = ("NXDOMAIN" if "NXDOMAIN" in outcomes else "NoAddress" if "NOERROR" in outcomes
               else "Timeout" if all(o == "Timeout" for o in outcomes)
               else "MalformedReply" if "Malformed" in outcomes else outcomes[-1])
    return Resolution(name, (), "dns", tuple(attempts), failure, budget_spent)


def query(server: str, name: str, qtype: str, timeout: float,
          deadline: Optional[Deadline] = None) -> ServerAttempt:
    """One question to one server over UDP, again over TCP if the reply is truncated (TC).

    Each of the two waits at most `timeout`, and both together no longer than `deadline`.
    """
    overall = deadline or Deadline.after(2 * timeout)
    qid = struct.unpack("!H", os.urandom(2))[0]
    packet = build_query(qid, name, QTYPES[qtype])
    started, transport = time.monotonic(), "udp"  # measures latency; limits: the deadline
    try:
        reply = parse_reply(_ask_udp(server, packet, qid, overall.within(timeout)), name,
                            QTYPES[qtype])
        if reply.truncated:
            transport = "tcp"
            reply = parse_reply(_ask_tcp(server, packet, qid, overall.within(timeout)), name,
                                QTYPES[qtype])
    except socket.timeout:
        return ServerAttempt(server, qtype, "Timeout", (), _ms(started), transport=transport)
    except MalformedReply as exc:
        return ServerAttempt(server, qtype, "Malformed", (), _ms(started), str(exc), transport)
    except OSError as exc:
        return ServerAttempt(server, qtype, "Error", (), _ms(started), _os_error(exc),
                             transport)
    return ServerAttempt(server, qtype, RCODES.get(reply.rcode, f"RCODE{reply.rcode}"),
                         reply.answers, _ms(started), transport=transport)


def _ask_udp(server: str, packet: bytes, qid: int, deadline: Deadline) -> bytes:
    """The first datagram carrying our id (others are ignored, as glibc does)."""
    with socket.socket(_family(server), socket.SOCK_DGRAM) as sock:
        sock.connect((server, 53))
        sock.send(packet)
        while True:
            sock.settimeout(deadline.wait())
            reply = sock.recv(65535)
            if len(reply) >= 2 and struct.unpack("!H", reply[:2])[0] == qid:
                return reply


def _ask_tcp(server: str, packet: bytes, qid: int, deadline: Deadline) -> bytes:
    """RFC 1035 4.2.2: two length bytes, then the message; every wait within `deadline`."""
    with socket.socket(_family(server), socket.SOCK_STREAM) as sock:
        sock.settimeout(deadline.wait())
        sock.connect((server, 53))
        sock.settimeout(deadline.wait())
        sock.sendall(struct.pack("!H", len(packet)) + packet)
        size = struct.unpack("!H", _recv_exact(sock, 2, deadline))[0]
        reply = _recv_exact(sock, size, deadline)
    if len(reply) < 2 or struct.unpack("!H", reply[:2])[0] != qid:
        raise MalformedReply("the TCP reply carries another id")
    return reply


def _recv_exact(sock: socket.socket, size: int, deadline: Deadline) -> bytes:
    data = b""
    while len(data) < size:
        sock.settimeout(deadline.wait())  # a server trickling bytes still meets the deadline
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError(errno.ECONNRESET, f"closed after {len(data)} of {size} bytes")
        data += chunk
    return data


def _family(server: str) -> int:
    return socket.AF_INET6 if ":" in server else socket.AF_INET


def _hosts_lookup(name: str, version: Optional[str], path: str) -> tuple[str, ...]:
    found: list[str] = []
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return ()
    for line in lines:
        words = line.split("#")[0].split()
        if len(words) >= 2 and name.lower() in (w.lower() for w in words[1:]):
            try:
                addr = ipaddress.ip_address(words[0])
            except ValueError:
                continue
            if version is None or addr.version == int(version[-1]):
                found.append(str(addr))
    return tuple(found)


def _ms(started: float) -> float:
    return (time.monotonic() - started) * 1000.0


def _os_error(exc: OSError) -> str:
    return errno.errorcode.get(exc.errno or 0, "") or str(exc)


def describe(res: Resolution) -> Sequence[tuple[str, str]]:
    """Evidence pairs for a DnsResolution issue."""
    pairs = [("name", res.name), ("failure", res.failure)]
    for i, a in enumerate(res.attempts):
        what = f"malformed reply ({a.error})" if a.outcome == "Malformed" else \
            a.outcome + (f" {a.error}" if a.error else "")
        via = " over tcp (the udp reply was truncated)" if a.transport == "tcp" else ""
        pairs.append((f"server{i + 1}", f"{a.server} {a.qtype} -> {what}{via} in "
                      f"{a.elapsed_ms:.0f} ms"))
    if res.budget_spent:
        pairs.append(("budget", f"the DNS budget ({DNS_BUDGET:.0f} s) ran out before every "
                      "server was asked"))
    return pairs
