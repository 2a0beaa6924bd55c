"""Crafted Ethernet frames (IPv4/IPv6, TCP/UDP/ICMP, fragments, ARP, VLAN) for BPF programs."""
from __future__ import annotations

import ipaddress
import random
import struct
from dataclasses import dataclass
from typing import Iterable, List, Optional, Sequence

from capture_engine.filters import CaptureFilter

MAC_A, MAC_B = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")
VM4, PEER4 = "10.199.0.1", "10.199.0.2"
VM6, PEER6 = "fd00:199::1", "fd00:199::2"
TCP, UDP, ICMP, ICMP6, FRAGMENT6 = 6, 17, 1, 58, 44


@dataclass(frozen=True)
class Frame:
    label: str
    data: bytes
    shape: str = "plain"


def _ethernet(ethertype: int, payload: bytes) -> bytes:
    return MAC_A + MAC_B + struct.pack("!H", ethertype) + payload


def _transport(proto: int, sport: int, dport: int) -> bytes:
    if proto == TCP:
        return struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, 0x02, 8192, 0, 0)
    if proto == UDP:
        return struct.pack("!HHHH", sport, dport, 12, 0) + b"data"
    return struct.pack("!BBHHH", 8, 0, 0, 1, 1) + b"ping"  # ICMP / ICMPv6 echo


def ipv4(src: str, dst: str, proto: int, sport: int = 0, dport: int = 0,
         fragment_offset: int = 0, options: int = 0) -> bytes:
    body = _transport(proto, sport, dport)
    ihl = 5 + options
    header = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, 20 + 4 * options + len(body), 1,
                         fragment_offset, 64, proto, 0, ipaddress.IPv4Address(src).packed,
                         ipaddress.IPv4Address(dst).packed) + b"\x01" * (4 * options)
    return _ethernet(0x0800, header + body)


def ipv6(src: str, dst: str, proto: int, sport: int = 0, dport: int = 0,
         fragment: bool = False) -> bytes:
    body = _transport(proto, sport, dport)
    nxt = proto
    if fragment:
        body = struct.pack("!BBHI", proto, 0, 0, 7) + body
        nxt = FRAGMENT6
    header = struct.pack("!IHBB16s16s", 6 << 28, len(body), nxt, 64,
                         ipaddress.IPv6Address(src).packed, ipaddress.IPv6Address(dst).packed)
    return _ethernet(0x86DD, header + body)


def arp() -> bytes:
    return _ethernet(0x0806, struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, MAC_A,
                                         bytes(4), bytes(6), bytes(4)))


def vlan_tagged(data: bytes, vid: int, tpid: int = 0x8100) -> bytes:
    """`data` with an 802.1Q tag (priority 0) after the MAC addresses."""
    return data[:12] + struct.pack("!HH", tpid, vid & 0x0FFF) + data[12:]


# IPv4 flags+offset word per shape: a later fragment (offset 100, or with offset bit 12 set),
# the first fragment (more-fragments flag only: its ports are there).
FRAGMENT_WORDS = {"fragment": 100, "fragment-high": 0x1000, "first-fragment": 0x2000}
SHAPES = ("plain",) * 6 + ("options", "truncated", *FRAGMENT_WORDS)


def frame(src: str, dst: str, proto: int, sport: int, dport: int, shape: str) -> bytes:
    """One packet of a shape: plain, options (IPv4 with 8 bytes of options), or one of
    FRAGMENT_WORDS (for IPv6: a fragment header before the transport header), or truncated
    (the IP header only: a filter that loads ports rejects it)."""
    if ipaddress.ip_address(src).version == 4:
        if proto == ICMP6:
            proto = ICMP
        data = ipv4(src, dst, proto, sport, dport, fragment_offset=FRAGMENT_WORDS.get(shape, 0),
                    options=2 if shape == "options" else 0)
        return data[:34] if shape == "truncated" else data
    if proto == ICMP:
        proto = ICMP6
    data = ipv6(src, dst, proto, sport, dport, fragment=shape in FRAGMENT_WORDS)
    return data[:54] if shape == "truncated" else data


def _neighbours(lo: int, hi: int, top: int) -> List[int]:
    return [v for v in (lo - 1, lo, hi, hi + 1, (lo + hi) // 2) if 0 <= v <= top]


def _candidate_addresses(filters: Sequence[CaptureFilter], version: int,
                         default: str) -> List[str]:
    found = {default, VM4 if version == 4 else VM6, PEER4 if version == 4 else PEER6}
    top = (1 << 32) - 1 if version == 4 else (1 << 128) - 1
    for f in filters:
        for field in (f.local_ip, f.remote_ip):
            for lo, hi in field.of_version(version) if field else ():
                values = _neighbours(int(lo), int(hi), top)
                if version == 6:  # near misses in every word: each trie level is tested
                    values += [int(v) ^ (1 << (32 * w)) for v in (lo, hi) for w in range(4)]
                found.update(str(ipaddress.ip_address(v) if version == 6 else
                                 ipaddress.IPv4Address(v)) for v in values)
    return sorted(found)


def _candidate_ports(filters: Sequence[CaptureFilter]) -> List[int]:
    found = {22, 80, 443, 5353, 40000}
    for f in filters:
        for field in (f.local_port, f.remote_port):
            for lo, hi in field.ranges if field else ():
                found.update(_neighbours(lo, hi, 65535))
    return sorted(found)


def corpus(filters: Sequence[CaptureFilter], count: int, seed: int) -> List[Frame]:
    """ARP plus `count` packets mixing the filters' own values, their neighbours and others,
    in both directions: the same frames for the same filters and seed."""
    rng = random.Random(seed)
    ports = _candidate_ports(filters)
    addresses = {4: _candidate_addresses(filters, 4, "192.0.2.9"),
                 6: _candidate_addresses(filters, 6, "2001:db8::9")}
    frames = [Frame("arp", arp())]
    for n in range(count):
        version = rng.choice((4, 6))
        local, remote = rng.choice(addresses[version]), rng.choice(addresses[version])
        lport, rport = rng.choice(ports), rng.choice(ports)
        proto = rng.choice((TCP, TCP, UDP, UDP, ICMP))
        shape = rng.choice(SHAPES)
        outgoing = rng.random() < 0.5
        src, dst, sport, dport = ((local, remote, lport, rport) if outgoing
                                  else (remote, local, rport, lport))
        label = f"{n}:{proto}/{shape} {src}:{sport} > {dst}:{dport}"
        frames.append(Frame(label, frame(src, dst, proto, sport, dport, shape), shape))
    return frames


def exact_matches(filters: Sequence[CaptureFilter]) -> Iterable[Frame]:
    """For every listed value, one packet each way that every other field also matches."""
    for f in filters:
        for version in sorted(f.versions()):
            yield from _exact(f, version)


def _first(field: Optional[object], version: int, default: str) -> List[str]:
    if field is None:
        return [default]
    values = [str(lo) for lo, _ in field.of_version(version)]  # type: ignore[attr-defined]
    return values or [default]


def _exact(f: CaptureFilter, version: int) -> Iterable[Frame]:
    locals_ = _first(f.local_ip, version, VM4 if version == 4 else VM6)
    remotes = _first(f.remote_ip, version, PEER4 if version == 4 else PEER6)
    lports = [lo for lo, _ in f.local_port.ranges] if f.local_port else [40000]
    rports = [hi for _, hi in f.remote_port.ranges] if f.remote_port else [443]
    proto = UDP if f.protocol == "UDP" else TCP
    width = max(len(locals_), len(remotes), len(lports), len(rports))
    for i in range(width):
        la, ra = locals_[i % len(locals_)], remotes[i % len(remotes)]
        lp, rp = lports[i % len(lports)], rports[i % len(rports)]
        yield Frame(f"exact out {la}:{lp} > {ra}:{rp}", frame(la, ra, proto, lp, rp, "plain"))
        yield Frame(f"exact in {ra}:{rp} > {la}:{lp}", frame(ra, la, proto, rp, lp, "plain"))
