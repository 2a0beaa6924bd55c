"""Enter a named network namespace from one thread (setns(2) through libc, for Python 3.9+)."""
from __future__ import annotations

import contextlib
import ctypes
import os
from typing import Iterator, Optional

CLONE_NEWNET = 0x40000000
NETNS_RUN_DIR = "/run/netns"


class NamespaceNotFound(LookupError):
    """No network namespace of that name (as `ip netns add` creates them)."""


def _setns(fd: int) -> None:
    """os.setns exists only from Python 3.12."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@contextlib.contextmanager
def in_netns(name: Optional[str]) -> Iterator[None]:
    """Run the calling thread inside namespace `name` (None: stay where it is), then return."""
    if not name:
        yield
        return
    saved = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(os.path.join(NETNS_RUN_DIR, name), os.O_RDONLY)
    except OSError:
        os.close(saved)
        raise NamespaceNotFound(f"network namespace {name!r} does not exist") from None
    try:
        _setns(target)
        yield
    finally:
        os.close(target)
        _setns(saved)
        os.close(saved)
