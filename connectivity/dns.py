"""A small stub resolver that reports per-server answers, timings and failures (RFC 1035)."""
from __future__ import annotations

import ipaddress
import os
import socket
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass

RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}
QTYPES = {"A": 1, "AAAA": 28}
MAX_SERVER_TIMEOUT = 2.0  # glibc's default is 5 s per try: too slow for a bounded check


@dataclass(frozen=True)
class ServerAttempt:
    server: str
    qtype: str
    outcome: str            # an RCODE name, "Timeout" or "Error"
    answers: tuple[str, ...]
    elapsed_ms: float
    error: str = ""


@dataclass(frozen=True)
class Resolution:
    name: str
    addresses: tuple[str, ...]
    source: str                         # "literal", "/etc/hosts" or "dns"
    attempts: tuple[ServerAttempt, ...] = ()
    failure: str = ""                   # NXDOMAIN, SERVFAIL, Timeout, NoAddress, NoNameservers

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
                    if opt.startswith("timeout:") and opt[8:].isdigit():
                        timeout = float(opt[8:])
        return cls(tuple(servers), min(max(timeout, 0.1), MAX_SERVER_TIMEOUT))


def resolve(name: str, version: str | None = None, config: ResolverConfig | None = None,
            hosts_path: str = "/etc/hosts") -> Resolution:
    """Resolve like glibc's files-then-dns, keeping each server's answer as evidence."""
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
    qtypes = {"IPv4": ["A"], "IPv6": ["AAAA"]}.get(version or "", ["A", "AAAA"])
    attempts: list[ServerAttempt] = []
    for qtype in qtypes:
        for server in config.nameservers:
            attempt = query(server, name, qtype, config.timeout)
            attempts.append(attempt)
            if attempt.answers:
                return Resolution(name, attempt.answers, "dns", tuple(attempts))
            if attempt.outcome in ("NXDOMAIN", "NOERROR"):
                break  # an authoritative "no": other servers would say the same
        if attempts[-1].outcome == "NXDOMAIN" or all(a.outcome == "Timeout" for a in attempts):
            break  # AAAA after all servers timed out on A would only double the wait
    outcomes = [a.outcome for a in attempts]
    failure = ("NXDOMAIN" if "NXDOMAIN" in outcomes else "NoAddress" if "NOERROR" in outcomes
               else "Timeout" if all(o == "Timeout" for o in outcomes) else outcomes[-1])
    return Resolution(name, (), "dns", tuple(attempts), failure)


def query(server: str, name: str, qtype: str, timeout: float) -> ServerAttempt:
    """One UDP question to one server; waits for the matching reply until the timeout."""
    family = socket.AF_INET6 if ":" in server else socket.AF_INET
    qid = struct.unpack("!H", os.urandom(2))[0]
    packet = build_query(qid, name, QTYPES[qtype])
    started = time.monotonic()
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect((server, 53))
            sock.send(packet)
            while True:
                left = timeout - (time.monotonic() - started)
                if left <= 0:
                    raise socket.timeout()
                sock.settimeout(left)
                reply = sock.recv(4096)
                if len(reply) >= 12 and struct.unpack("!H", reply[:2])[0] == qid:
                    break
    except socket.timeout:
        return ServerAttempt(server, qtype, "Timeout", (), _ms(started))
    except OSError as exc:
        return ServerAttempt(server, qtype, "Error", (), _ms(started), _os_error(exc))
    try:
        rcode, answers = parse_reply(reply, QTYPES[qtype])
    except (struct.error, IndexError):
        return ServerAttempt(server, qtype, "Error", (), _ms(started), "malformed reply")
    return ServerAttempt(server, qtype, RCODES.get(rcode, f"RCODE{rcode}"), answers, _ms(started))


def build_query(qid: int, name: str, qtype: int) -> bytes:
    header = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)  # recursion desired
    labels = b"".join(bytes([len(p)]) + p.encode("idna") for p in name.rstrip(".").split("."))
    return header + labels + b"\x00" + struct.pack("!HH", qtype, 1)


def parse_reply(reply: bytes, qtype: int) -> tuple[int, tuple[str, ...]]:
    """RCODE and the addresses of the wanted type in the answer section (CNAMEs followed)."""
    _, flags, qdcount, ancount = struct.unpack("!HHHH", reply[:8])
    offset = 12
    for _ in range(qdcount):
        offset = _skip_name(reply, offset) + 4
    found: list[str] = []
    for _ in range(ancount):
        offset = _skip_name(reply, offset)
        rtype, _cls, _ttl, length = struct.unpack("!HHIH", reply[offset:offset + 10])
        data = reply[offset + 10:offset + 10 + length]
        offset += 10 + length
        if rtype == qtype == 1 and length == 4:
            found.append(socket.inet_ntop(socket.AF_INET, data))
        elif rtype == qtype == 28 and length == 16:
            found.append(socket.inet_ntop(socket.AF_INET6, data))
    return flags & 0x000F, tuple(found)


def _skip_name(data: bytes, offset: int) -> int:
    while True:
        length = data[offset]
        if length == 0:
            return offset + 1
        if length & 0xC0 == 0xC0:
            return offset + 2
        offset += 1 + length


def _hosts_lookup(name: str, version: str | None, path: str) -> tuple[str, ...]:
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
    import errno

    return errno.errorcode.get(exc.errno or 0, "") or str(exc)


def describe(res: Resolution) -> Sequence[tuple[str, str]]:
    """Evidence pairs for a DnsResolution issue."""
    pairs = [("name", res.name), ("failure", res.failure)]
    for i, a in enumerate(res.attempts):
        pairs.append((f"server{i + 1}", (f"{a.server} {a.qtype} -> {a.outcome}"
                      f"{' ' + a.error if a.error else ''} in {a.elapsed_ms:.0f} ms")))
    return pairs
