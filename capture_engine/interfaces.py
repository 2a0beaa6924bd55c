"""The VM's network interfaces: listing up, non-loopback NICs and checking names."""
from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import socket
import struct
from typing import Iterator, List, Optional, Sequence

from capture_engine.errors import InterfaceNotFoundError

SIOCGIFFLAGS = 0x8913
IFF_UP, IFF_LOOPBACK = 0x1, 0x8
CLONE_NEWNET = 0x40000000


def _setns(fd: int) -> None:
    """setns(2) through libc: os.setns exists only from Python 3.12."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


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
    if not name:
        yield
        return
    saved = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    except OSError:
        os.close(saved)
        raise InterfaceNotFoundError(f"network namespace {name!r} does not exist") from None
    try:
        _setns(target)
        yield
    finally:
        os.close(target)
        _setns(saved)
        os.close(saved)
