"""Classic BPF on a packet socket: attach, check what the kernel holds, explain a refusal."""
from __future__ import annotations

import ctypes
import errno
import os
import socket
from typing import Optional, Sequence

from capture_engine.attach import Insn, optmem_max, set_filter
from capture_engine.errors import CaptureFailedError, KernelFilterRefusedError

SO_GET_FILTER = 26  # the same number as SO_ATTACH_FILTER, read the other way


def attach(sock: socket.socket, program: Sequence[Insn], name: str) -> None:
    """SO_ATTACH_FILTER; a refusal raises the coded error that says what to change."""
    try:
        set_filter(sock, program)
    except OSError as exc:
        raise refused(name, program, exc.errno) from None


def attached_length(fd: int) -> int:
    """How many instructions the classic filter attached to socket `fd` has (0: none)."""
    libc = ctypes.CDLL(None, use_errno=True)
    count = ctypes.c_uint(0)  # an optlen of 0 asks only for the instruction count
    if libc.getsockopt(fd, socket.SOL_SOCKET, SO_GET_FILTER, None, ctypes.byref(count)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return count.value


def check_attached(fd: int, program: Sequence[Insn], name: str) -> None:
    """libpcap falls back to filtering in user space, copying every packet out of the kernel,
    when the kernel refuses a program: make that an error instead."""
    try:
        length = attached_length(fd)
    except OSError as exc:
        raise CaptureFailedError(f"cannot read back the capture filter on {name}: "
                                 f"{exc.strerror or exc}") from None
    if length != len(program):
        raise refused(name, program, None)


def refused(name: str, program: Sequence[Insn], err: Optional[int]) -> CaptureFailedError:
    """The error for a program the kernel would not take on interface `name`."""
    size = len(program) * 8
    if err not in (None, errno.ENOMEM):
        return CaptureFailedError(f"cannot set the capture filter on {name}: "
                                  f"{os.strerror(err or 0)}")
    limit = optmem_max()
    return KernelFilterRefusedError(
        f"the kernel refused the capture filter on {name} ({len(program)} instructions, "
        f"{size} bytes; net.core.optmem_max is {limit if limit is not None else 'unknown'}): "
        f"raise net.core.optmem_max (sysctl) or use fewer filter values; the capture "
        f"does not fall back to copying every packet to user space")
