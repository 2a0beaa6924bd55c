"""Attach a classic BPF program to a socket, and check beforehand that the kernel will take it.

The kernel charges an attached filter (its size after conversion to eBPF, where one packet
load is ~14 instructions) to the socket's option memory and refuses it with ENOMEM past
`net.core.optmem_max` (20,480 bytes by default before Linux 6.9; per network namespace on
recent kernels). The raw backend would then fail with a bare "Cannot allocate memory", and
libpcap silently falls back to filtering every packet in user space.
"""
from __future__ import annotations

import ctypes
import errno
import socket
import struct
from typing import Optional, Sequence

from capture_engine.errors import FilterTooLargeError

Insn = tuple[int, int, int, int]  # (code, jt, jf, k) as in struct sock_filter
SO_ATTACH_FILTER = 26
MAX_INSNS = 4096  # BPF_MAXINSNS
OPTMEM_MAX = "/proc/sys/net/core/optmem_max"
REJECT_ALL: tuple[Insn, ...] = ((0x06, 0, 0, 0),)  # ret #0
SHRINK_HINT = ("use fewer filters, fewer ports or addresses per list, or one range instead "
               "of a list (80-120, 10.0.0.1-10.0.0.50)")


def optmem_max() -> Optional[int]:
    """net.core.optmem_max of the caller's network namespace (None when unreadable)."""
    try:
        with open(OPTMEM_MAX) as source:
            return int(source.read().strip())
    except (OSError, ValueError):
        return None


def too_large(instructions: int) -> FilterTooLargeError:
    """The coded error for a program the kernel will not take, saying how to shrink it."""
    if instructions > MAX_INSNS:
        why = f"the kernel allows {MAX_INSNS}"
    else:
        limit = optmem_max()
        why = "the kernel refuses to attach it: net.core.optmem_max is " + (
            f"{limit:,} bytes here" if limit is not None else "too small here")
    return FilterTooLargeError(f"the filters compile to {instructions:,} BPF instructions and "
                               f"{why}; {SHRINK_HINT}")


def set_filter(sock: socket.socket, program: Sequence[Insn]) -> None:
    """SO_ATTACH_FILTER as the kernel takes it (struct sock_fprog); OSError as it refuses."""
    insns = b"".join(struct.pack("<HBBI", *insn) for insn in program)
    buffer = ctypes.create_string_buffer(insns, len(insns))
    fprog = struct.pack("HL", len(program), ctypes.addressof(buffer))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def attach_filter(sock: socket.socket, program: Sequence[Insn]) -> None:
    """SO_ATTACH_FILTER; FilterTooLargeError when the kernel has no room for the program."""
    if len(program) > MAX_INSNS:
        raise too_large(len(program))
    try:
        set_filter(sock, program)
    except OSError as exc:
        if exc.errno == errno.ENOMEM:
            raise too_large(len(program)) from None
        raise


def check_attachable(program: Sequence[Insn]) -> None:
    """FilterTooLargeError unless this network namespace's kernel attaches `program`.

    Tried on a throwaway datagram socket (same accounting as a packet socket, no privilege,
    no traffic), the way libpcap attaches: a reject-all filter first, then the program, so
    the program is charged while the first one still is.
    """
    if len(program) > MAX_INSNS:
        raise too_large(len(program))
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as probe:
        attach_filter(probe, REJECT_ALL)
        attach_filter(probe, program)
