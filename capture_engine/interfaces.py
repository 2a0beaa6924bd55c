"""The VM's network interfaces: listing up, non-loopback NICs and checking names."""
from __future__ import annotations

import contextlib
import fcntl
import socket
import struct
from typing import Iterator, List, Optional, Sequence

from capture_engine.errors import InterfaceNotFoundError
from plumbing import netns

SIOCGIFFLAGS = 0x8913
IFF_UP, IFF_LOOPBACK = 0x1, 0x8


def _flags(name: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14x", name.encode()[:15], 0)
        reply = fcntl.ioctl(sock.fileno(), SIOCGIFFLAGS, request)
    return struct.unpack_from("16sH", reply)[1]


def capture_interfaces() -> List[str]:
    """Every up, non-loopback interface, in index order (of the caller's network namespace)."""
    found = []
    for _, name in sorted(socket.if_nameindex()):
        try:
            flags = _flags(name)
        except OSError:
            continue
        if flags & IFF_UP and not flags & IFF_LOOPBACK:
            found.append(name)
    return found


def resolve_interfaces(requested: Sequence[str]) -> List[str]:
    """The requested interfaces (checked to exist) or, when none are named, the default set."""
    if not requested:
        found = capture_interfaces()
        if not found:
            raise InterfaceNotFoundError("no up, non-loopback network interface to capture on")
        return found
    known = {name for _, name in socket.if_nameindex()}
    missing = [name for name in requested if name not in known]
    if missing:
        raise InterfaceNotFoundError(
            f"unknown network interface(s): {', '.join(missing)} "
            f"(this VM has: {', '.join(sorted(known))})")
    return list(dict.fromkeys(requested))


@contextlib.contextmanager
def in_netns(name: Optional[str]) -> Iterator[None]:
    """Run the calling thread inside network namespace `name` (None: stay where it is)."""
    try:
        with netns.in_netns(name):
            yield
    except netns.NamespaceNotFound as exc:
        raise InterfaceNotFoundError(str(exc)) from None
