"""The VM's network interfaces: the default capture set, name checks, and watching them."""
from __future__ import annotations

import contextlib
import errno
import os
import socket
import struct
from dataclasses import dataclass
from typing import Iterator, Optional, Sequence

from capture_engine.errors import InterfaceNotFoundError
from plumbing import netns

IFF_UP, IFF_LOOPBACK, IFF_SLAVE = 0x1, 0x8, 0x800
NETLINK_ROUTE = 0
RTM_NEWLINK, RTM_GETLINK = 16, 18
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
IFLA_IFNAME, IFLA_MASTER = 3, 10
NLA_TYPE_MASK = 0x3FFF
NLMSG = struct.Struct("=IHHII")      # len, type, flags, seq, pid
IFINFO = struct.Struct("=BxHiII")    # family, type, index, flags, change
RTA = struct.Struct("=HH")           # len, type
U32 = struct.Struct("=I")
REPLY_TIMEOUT = 2.0


@dataclass(frozen=True)
class Link:
    """One interface as rtnetlink reports it."""

    name: str
    index: int
    flags: int
    master: int = 0  # ifindex of the interface it is enslaved to (bond, bridge, netvsc)

    @property
    def up(self) -> bool:
        return bool(self.flags & IFF_UP)

    @property
    def enslaved(self) -> bool:
        """A VF under its synthetic NIC, a bond or bridge port: its traffic is also seen on
        the master, so capturing both would record every packet twice."""
        return bool(self.master) or bool(self.flags & IFF_SLAVE)


def _align(length: int) -> int:
    return (length + 3) & ~3


def _parse_link(payload: bytes) -> Optional[Link]:
    _, _, index, flags, _ = IFINFO.unpack_from(payload, 0)
    name, master, offset = None, 0, IFINFO.size
    while offset + RTA.size <= len(payload):
        length, kind = RTA.unpack_from(payload, offset)
        if length < RTA.size:
            break
        value = payload[offset + RTA.size:offset + length]
        kind &= NLA_TYPE_MASK
        if kind == IFLA_IFNAME:
            name = value.split(b"\0", 1)[0].decode(errors="replace")
        elif kind == IFLA_MASTER and len(value) >= 4:
            master = U32.unpack_from(value)[0]
        offset += _align(length)
    return Link(name, index, flags, master) if name else None


class LinkTable:
    """An rtnetlink socket; it stays in the network namespace it was created in, so the
    capture's threads can read that namespace's interfaces from anywhere."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        self._sock.settimeout(REPLY_TIMEOUT)
        self._sock.bind((0, 0))
        self._seq = 0

    def links(self) -> dict[str, Link]:
        """Every interface by name (one RTM_GETLINK dump)."""
        self._seq += 1
        request = NLMSG.pack(NLMSG.size + IFINFO.size, RTM_GETLINK,
                             NLM_F_REQUEST | NLM_F_DUMP, self._seq, 0) + IFINFO.pack(0, 0, 0, 0, 0)
        self._sock.send(request)
        found: dict[str, Link] = {}
        while True:
            data = self._sock.recv(1 << 16)
            for kind, payload in self._messages(data):
                if kind == NLMSG_DONE:
                    return found
                if kind == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", payload)[0]
                    raise OSError(code, os.strerror(code))
                link = _parse_link(payload) if kind == RTM_NEWLINK else None
                if link is not None:
                    found[link.name] = link

    def _messages(self, data: bytes) -> Iterator[tuple[int, bytes]]:
        offset = 0
        while offset + NLMSG.size <= len(data):
            length, kind, _, seq, _ = NLMSG.unpack_from(data, offset)
            if length < NLMSG.size:
                raise OSError(errno.EPROTO, "malformed netlink message")
            if seq == self._seq:  # replies to an earlier request that timed out are skipped
                yield kind, data[offset + NLMSG.size:offset + length]
            offset += _align(length)

    def close(self) -> None:
        self._sock.close()


def default_interfaces(links: dict[str, Link]) -> list[str]:
    """Every up, non-loopback interface that is not enslaved to another, in index order."""
    chosen = [link for link in links.values()
              if link.up and not link.flags & IFF_LOOPBACK and not link.enslaved]
    return [link.name for link in sorted(chosen, key=lambda link: link.index)]


def resolve_interfaces(requested: Sequence[str],
                       links: Optional[dict[str, Link]] = None) -> list[str]:
    """The requested interfaces (checked to exist) or, when none are named, the default set."""
    if links is None:
        table = LinkTable()
        try:
            links = table.links()
        finally:
            table.close()
    if not requested:
        found = default_interfaces(links)
        if not found:
            raise InterfaceNotFoundError("no up, non-loopback network interface to capture on "
                                         "(interfaces enslaved to another are left out)")
        return found
    missing = [name for name in requested if name not in links]
    if missing:
        raise InterfaceNotFoundError(
            f"unknown network interface(s): {', '.join(missing)} "
            f"(this VM has: {', '.join(sorted(links))})")
    return list(dict.fromkeys(requested))


@contextlib.contextmanager
def in_netns(name: Optional[str]) -> Iterator[None]:
    """Run the calling thread inside network namespace `name` (None: stay where it is)."""
    try:
        with netns.in_netns(name):
            yield
    except netns.NamespaceNotFound as exc:
        raise InterfaceNotFoundError(str(exc)) from None
