"""Network Watcher capture filters: parsed into typed objects and rendered as tcpdump syntax."""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence, SupportsInt, TypeVar, Union

from capture_engine.errors import (
    InvalidAddressError,
    InvalidPortError,
    InvalidRangeError,
    InvalidSettingsError,
    ProblemList,
    UnknownProtocolError,
)
from capture_engine.fields import (
    ASCII_DIGITS,
    SPACE,
    Fields,
    blank,
    read_fields,
    shown,
    whole_number,
)

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
V = TypeVar("V", bound=SupportsInt)  # a port, or an address (int() keeps its order)
PROTOCOLS = {"tcp": "TCP", "udp": "UDP", "any": "Any", "all": "Any"}
MAX_LIST_ITEMS = 64
MAX_FILTERS = 64
FILTER_FIELDS = ("protocol", "localIPAddress", "remoteIPAddress", "localPort", "remotePort")
OUTBOUND, INBOUND = "outbound", "inbound"  # tcpdump's words for sent by / received by the VM


@dataclass(frozen=True)
class AddressSet:
    """Inclusive address ranges (a single value is lo == hi); each range is one IP version."""

    ranges: tuple[tuple[IPAddress, IPAddress], ...]

    def of_version(self, version: int) -> tuple[tuple[IPAddress, IPAddress], ...]:
        return tuple(r for r in self.ranges if r[0].version == version)

    def versions(self) -> set[int]:
        return {lo.version for lo, _ in self.ranges}


@dataclass(frozen=True)
class PortSet:
    """Inclusive port ranges (a single port is lo == hi)."""

    ranges: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class CaptureFilter:
    """One filter: all fields must match; `local` is the VM's side of the packet."""

    protocol: str = "Any"
    local_ip: Optional[AddressSet] = None
    remote_ip: Optional[AddressSet] = None
    local_port: Optional[PortSet] = None
    remote_port: Optional[PortSet] = None

    @property
    def has_ports(self) -> bool:
        return self.local_port is not None or self.remote_port is not None

    @property
    def has_endpoints(self) -> bool:
        return self.has_ports or self.local_ip is not None or self.remote_ip is not None

    @property
    def unconstrained(self) -> bool:
        return self.protocol == "Any" and not self.has_endpoints

    def versions(self) -> set[int]:
        """IP versions this filter can match."""
        found = {4, 6}
        for field in (self.local_ip, self.remote_ip):
            if field is not None:
                found &= field.versions()
        return found


def _items(raw: Any, field: str, problems: ProblemList, code: type) -> Optional[list[str]]:
    """Split a single value / range / list; None (and a problem) when the shape is wrong."""
    if isinstance(raw, int) and not isinstance(raw, bool) and abs(raw) < 10 ** 18:
        raw = str(raw)  # a port as a JSON number (str() of a huge int would raise)
    if not isinstance(raw, str):
        problems.add(field, f"must be a string, got {shown(raw)}", code)
        return None
    parts = [p.strip(SPACE) for p in re.split(r"[;,]", raw, maxsplit=MAX_LIST_ITEMS + 1)]
    if parts and parts[-1] == "":
        parts.pop()  # one trailing separator is allowed
    if len(parts) > MAX_LIST_ITEMS:
        problems.add(field, f"a list may hold at most {MAX_LIST_ITEMS} items", InvalidRangeError)
        return None
    if not parts or any(p == "" for p in parts):
        problems.add(field, f"malformed list {shown(raw)}: an empty value or empty list item",
                     InvalidRangeError)
        return None
    ranges = sum(1 for p in parts if "-" in p)
    if ranges and len(parts) > 1:
        problems.add(field, f"a range cannot be part of a list: {shown(raw)} (give one range, "
                     "or a list of single values)", InvalidRangeError)
        return None
    return parts


def _address(text: str, field: str, problems: ProblemList) -> Optional[IPAddress]:
    if "%" in text:
        problems.add(field, f"{shown(text)}: a zone index (%...) is not supported",
                     InvalidAddressError)
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        problems.add(field, f"not an IP address: {shown(text)}", InvalidAddressError)
        return None


def _prefix(text: str, field: str, problems: ProblemList) -> Optional[tuple[IPAddress,
                                                                          IPAddress]]:
    """`address/length` as its first and last address; refused, like tcpdump's `net`, when
    the length is out of range or the address has bits set past it."""
    address, _, length = text.partition("/")
    base = _address(address.strip(SPACE), field, problems)
    if base is None:
        return None
    top, digits = base.max_prefixlen, length.strip(SPACE)
    bits = whole_number(digits) if ASCII_DIGITS.fullmatch(digits) else None
    if bits is None:
        problems.add(field, f"{shown(text)}: the prefix length after / must be a number "
                     f"from 0 to {top}", InvalidAddressError)
        return None
    if bits > top:
        given = digits if len(digits) <= 12 else digits[:12] + "..."
        problems.add(field, f"{shown(text)}: /{given} is longer than an IPv{base.version} "
                     f"address (0 to {top})", InvalidAddressError)
        return None
    if len(digits) > 1 and digits.startswith("0"):  # tcpdump: /024 is octal, /20
        problems.add(field, f"{shown(text)}: a prefix length with a leading zero is "
                     f"ambiguous (tcpdump reads /{digits} as an octal number): write "
                     f"/{bits}", InvalidAddressError)
        return None
    net = ipaddress.ip_network(f"{base}/{bits}", strict=False)
    if net.network_address != base:
        problems.add(field, f"{shown(text)} has host bits set past /{bits}: did you mean "
                     f"{net}?", InvalidAddressError)
        return None
    return net.network_address, net.broadcast_address


def _parse_ranges(raw: Any, field: str, problems: ProblemList,
                  parse_one: Callable[[str, str, ProblemList], Optional[V]], what: str,
                  code: type, check_pair: Optional[Callable[[V, V, str], bool]] = None,
                  parse_block: Optional[Callable[[str, str, ProblemList],
                                                 Optional[tuple[V, V]]]] = None
                  ) -> Optional[list[tuple[V, V]]]:
    """Single values, one `first-last` range, or a list (of values or, with `parse_block`,
    of `address/length` blocks): as (first, last) pairs."""
    parts = _items(raw, field, problems, code)
    if parts is None:
        return None
    ranges: list[tuple[V, V]] = []
    for part in parts:
        if parse_block is not None and "/" in part:
            if "-" in part:
                problems.add(field, f"{shown(part)}: give a range first-last or a prefix "
                             "address/length, not both", InvalidAddressError)
                return None
            block = parse_block(part, field, problems)
            if block is None:
                return None
            ranges.append(block)
            continue
        ends = [e.strip(SPACE) for e in part.split("-", 2)]
        if len(ends) > 2:
            problems.add(field, f"malformed range {shown(part)}: use first-last",
                         InvalidRangeError)
            return None
        values = [parse_one(e, field, problems) for e in ends]  # a problem for each bad one
        lo, hi = values[0], values[-1]
        if lo is None or hi is None:
            return None
        if check_pair is not None and not check_pair(lo, hi, part):
            return None
        if int(lo) > int(hi):  # addresses: of one version once check_pair has passed
            problems.add(field, f"reversed range {shown(part)}: the first {what} must not be "
                         "greater than the last", InvalidRangeError)
            return None
        ranges.append((lo, hi))
    return ranges


def parse_addresses(raw: Any, field: str, problems: ProblemList) -> Optional[AddressSet]:
    def same_version(lo: IPAddress, hi: IPAddress, part: str) -> bool:
        if lo.version != hi.version:
            problems.add(field, f"range {shown(part)} mixes IPv4 and IPv6", InvalidRangeError)
            return False
        return True

    ranges: Optional[list[tuple[IPAddress, IPAddress]]] = _parse_ranges(
        raw, field, problems, _address, "address", InvalidAddressError, same_version,
        _prefix)
    return None if ranges is None else AddressSet(tuple(ranges))


def _port(text: str, field: str, problems: ProblemList) -> Optional[int]:
    value = whole_number(text)
    if value is None or value < 0:
        problems.add(field, f"not a port number: {shown(text)}", InvalidPortError)
        return None
    if value > 65535:
        problems.add(field, f"port {shown(text.strip(SPACE))} is over 65535", InvalidPortError)
        return None
    return value


def parse_ports(raw: Any, field: str, problems: ProblemList) -> Optional[PortSet]:
    ranges = _parse_ranges(raw, field, problems, _port, "port", InvalidPortError)
    return None if ranges is None else PortSet(tuple(ranges))


def _protocol(fields: Fields, problems: ProblemList) -> str:
    raw = fields.get("protocol")
    if raw is None:
        return "Any"
    protocol = PROTOCOLS.get(raw.strip(SPACE).lower(), "") if isinstance(raw, str) else ""
    if not protocol:
        problems.add(fields.path("protocol"), f"unknown protocol {shown(raw)} (use TCP, UDP "
                     "or Any)", UnknownProtocolError)
    return protocol or "Any"


def parse_filter(obj: Any, path: str, problems: ProblemList) -> Optional[CaptureFilter]:
    """Parse one filter object; problems are added under `path`."""
    if not isinstance(obj, dict):
        problems.add(path, f"a filter must be an object, got {shown(obj)}", InvalidSettingsError)
        return None
    before = len(problems)
    fields = read_fields(obj, FILTER_FIELDS, path + ".", problems)

    def opt(key: str, parser: Callable[[Any, str, ProblemList], Any]) -> Any:
        value = fields.get(key)
        return None if value is None else parser(value, fields.path(key), problems)

    result = CaptureFilter(_protocol(fields, problems),
                           opt("localIPAddress", parse_addresses),
                           opt("remoteIPAddress", parse_addresses),
                           opt("localPort", parse_ports), opt("remotePort", parse_ports))
    if len(problems) > before:
        return None
    if not result.versions():
        problems.add(path, "localIPAddress and remoteIPAddress have no IP version in common: "
                     "this filter could never match", InvalidAddressError)
        return None
    return result


def parse_filters(raw: Any, path: str, problems: ProblemList) -> tuple[CaptureFilter, ...]:
    if raw is None or blank(raw):
        return ()
    if not isinstance(raw, list):
        problems.add(path, f"must be a list of filter objects, got {shown(raw)}",
                     InvalidSettingsError)
        return ()
    if len(raw) > MAX_FILTERS:
        problems.add(path, f"{len(raw):,} filters: at most {MAX_FILTERS} (merge filters that "
                     "differ in one field into a list or a range)", InvalidSettingsError)
        return ()
    parsed = [parse_filter(item, f"{path}[{i}]", problems) for i, item in enumerate(raw)]
    return tuple(f for f in parsed if f is not None)


# -- tcpdump rendering ----------------------------------------------------------------------
def _any_of(terms: Sequence[str]) -> str:
    return terms[0] if len(terms) == 1 else "(" + " or ".join(terms) + ")"


def _address_expr(field: AddressSet, side: str) -> str:
    terms = []
    for lo, hi in field.ranges:
        proto = "ip" if lo.version == 4 else "ip6"
        for net in ipaddress.summarize_address_range(lo, hi):
            if net.num_addresses == 1:
                terms.append(f"{proto} {side} host {net.network_address}")
            else:
                terms.append(f"{proto} {side} net {net}")
    return _any_of(terms)


def _port_expr(field: PortSet, side: str) -> str:
    return _any_of([f"{side} port {lo}" if lo == hi else f"{side} portrange {lo}-{hi}"
                    for lo, hi in field.ranges])


def _direction(f: CaptureFilter, local: str, remote: str) -> str:
    terms = []
    if f.local_ip is not None:
        terms.append(_address_expr(f.local_ip, local))
    if f.remote_ip is not None:
        terms.append(_address_expr(f.remote_ip, remote))
    if f.local_port is not None:
        terms.append(_port_expr(f.local_port, local))
    if f.remote_port is not None:
        terms.append(_port_expr(f.remote_port, remote))
    return " and ".join(terms)


def filter_expression(f: CaptureFilter, direction: Optional[str] = None) -> str:
    """tcpdump syntax for one filter ('' matches everything); see tcpdump_expression."""
    proto = {"TCP": "tcp", "UDP": "udp"}.get(f.protocol, "(tcp or udp)" if f.has_ports else "")
    if not f.has_endpoints:
        return proto
    sent, received = _direction(f, "src", "dst"), _direction(f, "dst", "src")
    if direction is None:
        sides = f"((outbound and {sent}) or (inbound and {received}))"
    else:
        sides = f"({sent if direction == OUTBOUND else received})"
    return f"{proto} and {sides}" if proto else sides


def tcpdump_expression(filters: Sequence[CaptureFilter], direction: Optional[str] = None) -> str:
    """The tcpdump expression equivalent to a filter list (OR of filters; '' = everything).

    Local is the VM's side: `outbound` packets (sent by the VM) match with local = source,
    `inbound` ones with local = destination. libpcap reads that direction only on a live
    Linux capture; `direction` (OUTBOUND or INBOUND) renders the expression as it applies
    to packets of that direction, without the keyword, for a saved file.
    """
    if direction not in (None, OUTBOUND, INBOUND):
        raise ValueError(f"direction must be None, {OUTBOUND!r} or {INBOUND!r}")
    if not filters or any(f.unconstrained for f in filters):
        return ""
    return " or ".join(f"({filter_expression(f, direction)})" for f in filters)
