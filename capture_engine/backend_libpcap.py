"""libpcap backend: per-packet path in C (pcap_dump as the callback), one dispatch thread."""
from __future__ import annotations

import ctypes
import errno
import os
from typing import List, Optional, Sequence, Tuple

from capture_engine import pcaplib
from capture_engine.bpf import WHOLE_PACKET
from capture_engine.errors import (
    CaptureFailedError,
    InterfaceNotFoundError,
    UnsupportedLinkTypeError,
)
from capture_engine.pollloop import BLOCK_TIMEOUT_MS, serve

BUFFER_BYTES = 32 * 1024 * 1024
PCAP_ERROR_BREAK = -2
PCAP_ERROR_NO_SUCH_DEVICE = -5
SEEK_SET = 0
IOFBF, FSETLOCKING_BYCALLER = 0, 2
WRITE_BUFFER = 256 * 1024


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.fwrite.restype = ctypes.c_size_t
    libc.fwrite.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_void_p]
    libc.fseek.argtypes = [ctypes.c_void_p, ctypes.c_long, ctypes.c_int]
    libc.fileno.argtypes = [ctypes.c_void_p]
    libc.ferror.argtypes = [ctypes.c_void_p]
    libc.fopen.restype = ctypes.c_void_p
    libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    libc.fclose.argtypes = [ctypes.c_void_p]
    libc.setvbuf.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_size_t]
    getattr(libc, "__fsetlocking").argtypes = [ctypes.c_void_p, ctypes.c_int]
    return libc


def _os_error(default: str) -> OSError:
    err = ctypes.get_errno()
    return OSError(err, os.strerror(err) if err else default)


class LibpcapSink:
    """A pcap file written by libpcap's dumper; Python only touches it at batch boundaries."""

    def __init__(self, lib: ctypes.CDLL, handle: int) -> None:
        self.lib, self.handle, self.libc = lib, handle, _libc()
        self.dumper: Optional[int] = None
        self.path = ""
        self._buffer = ctypes.create_string_buffer(WRITE_BUFFER)

    def open(self, path: str, snaplen: int) -> None:
        """pcap_dump_fopen on our own FILE: a large buffer, and no stdio locking (only the
        dispatch thread writes), which a multi-threaded process would otherwise pay per fwrite.
        """
        self.path = path
        ctypes.set_errno(0)
        stream = self.libc.fopen(path.encode(), b"wb")
        if not stream:
            raise _os_error("cannot create the file")
        os.fchmod(self.libc.fileno(stream), 0o640)  # captures hold other people's traffic
        self.libc.setvbuf(stream, self._buffer, IOFBF, len(self._buffer))
        getattr(self.libc, "__fsetlocking")(stream, FSETLOCKING_BYCALLER)
        dumper = self.lib.pcap_dump_fopen(self.handle, stream)
        if not dumper:
            reason = (self.lib.pcap_geterr(self.handle) or b"").decode(errors="replace")
            self.libc.fclose(stream)
            raise OSError(errno.EIO, reason or "pcap_dump_fopen failed")
        self.dumper = dumper
        self.flush()

    def _file(self) -> int:
        return self.lib.pcap_dump_file(self.dumper)

    def offset(self) -> int:
        return self.lib.pcap_dump_ftell(self.dumper)

    def append(self, data) -> None:
        data = bytes(data)
        ctypes.set_errno(0)
        if self.libc.fwrite(data, 1, len(data), self._file()) != len(data):
            raise _os_error("short write")

    def flush(self) -> None:
        ctypes.set_errno(0)
        if self.lib.pcap_dump_flush(self.dumper) != 0 or self.libc.ferror(self._file()):
            error = _os_error("write error")
            if not error.errno:  # pcap_dump's fwrite failed earlier; its errno is gone
                space = os.statvfs(os.path.dirname(self.path) or ".")
                if space.f_bavail == 0:
                    error = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            raise error

    def truncate(self, offset: int) -> None:
        self.flush()
        os.ftruncate(self.libc.fileno(self._file()), offset)
        if self.libc.fseek(self._file(), offset, SEEK_SET) != 0:
            raise _os_error("seek failed")

    def read(self, start: int, end: int) -> bytes:
        self.flush()
        fd = os.open(self.path, os.O_RDONLY)  # libpcap's FILE is write-only
        try:
            return os.pread(fd, end - start, start)
        finally:
            os.close(fd)

    def close(self) -> None:
        if self.dumper:
            dumper, self.dumper = self.dumper, None
            self.lib.pcap_dump_close(dumper)


class LibpcapBackend:
    """One pcap handle per interface, all dispatched by one thread into one dumper."""

    name = "libpcap"

    def __init__(self, buffer_bytes: int = BUFFER_BYTES) -> None:
        self.lib = pcaplib.load()
        self.buffer_bytes = buffer_bytes
        self.handles: List[Tuple[str, int, int]] = []
        self._programs: list = []
        self._wake_r, self._wake_w = os.pipe()
        self._stopping = False
        self.failure: Optional[str] = None
        self.received = self.dropped = 0
        self._dump = ctypes.cast(self.lib.pcap_dump, ctypes.c_void_p)

    def _error(self, handle: int) -> str:
        return (self.lib.pcap_geterr(handle) or b"").decode(errors="replace")

    def open(self, interfaces: Sequence[str], program: Sequence[tuple], snaplen: int) -> None:
        for name in interfaces:
            self._open_one(name, program, snaplen or WHOLE_PACKET)

    def _open_one(self, name: str, program: Sequence[tuple], snaplen: int) -> None:
        errbuf = ctypes.create_string_buffer(pcaplib.PCAP_ERRBUF_SIZE)
        handle = self.lib.pcap_create(name.encode(), errbuf)
        if not handle:
            raise CaptureFailedError(f"pcap_create({name}): {errbuf.value.decode()}")
        self.handles.append((name, handle, -1))
        lib = self.lib
        lib.pcap_set_snaplen(handle, min(snaplen, WHOLE_PACKET))
        lib.pcap_set_promisc(handle, 0)
        lib.pcap_set_timeout(handle, BLOCK_TIMEOUT_MS)
        lib.pcap_set_buffer_size(handle, self.buffer_bytes)
        status = lib.pcap_activate(handle)
        if status < 0:
            reason = self._error(handle) or lib.pcap_statustostr(status).decode()
            cls = InterfaceNotFoundError if status == PCAP_ERROR_NO_SUCH_DEVICE \
                else CaptureFailedError
            raise cls(f"cannot capture on {name}: {reason}")
        if lib.pcap_datalink(handle) != pcaplib.DLT_EN10MB:
            raise UnsupportedLinkTypeError(
                f"{name} is not an Ethernet interface (link type {lib.pcap_datalink(handle)})")
        compiled = pcaplib.make_program(program)
        self._programs.append(compiled)
        if lib.pcap_setfilter(handle, ctypes.byref(compiled)) != 0:
            raise CaptureFailedError(f"cannot set the filter on {name}: {self._error(handle)}")
        if lib.pcap_setnonblock(handle, 1, errbuf) != 0:
            raise CaptureFailedError(f"pcap_setnonblock({name}): {errbuf.value.decode()}")
        self.handles[-1] = (name, handle, lib.pcap_get_selectable_fd(handle))

    def make_sink(self) -> LibpcapSink:
        return LibpcapSink(self.lib, self.handles[0][1])

    def run(self, recorder) -> None:
        """The dispatch loop (its own thread): until stop(), a limit, or a failure."""
        sources = {fd: (lambda _events, name=name, handle=handle:
                        self._dispatch(name, handle, recorder))
                   for name, handle, fd in self.handles}
        serve(sources, self._wake_r, lambda: self._running(recorder), self.refresh_stats)

    def _running(self, recorder) -> bool:
        return not self._stopping and not recorder.done and self.failure is None

    def drain(self, recorder) -> None:
        """Read whatever the kernel has already handed over (used after the stop time)."""
        for name, handle, _ in self.handles:
            self._dispatch(name, handle, recorder)

    def _dispatch(self, name: str, handle: int, recorder) -> int:
        if recorder.done:
            return 0
        start = recorder.sink.offset()
        count = self.lib.pcap_dispatch(handle, -1, self._dump, recorder.sink.dumper)
        if count > 0 or recorder.sink.offset() != start:
            recorder.after_direct_batch(start, max(count, 0))
        if count < 0 and count != PCAP_ERROR_BREAK:
            self.failure = f"capture on {name} failed: {self._error(handle)}"
        return max(count, 0)

    def refresh_stats(self) -> None:
        received = dropped = 0
        for _, handle, _ in self.handles:
            stat = pcaplib.PcapStat()
            if self.lib.pcap_stats(handle, ctypes.byref(stat)) == 0:
                received += stat.ps_recv
                dropped += stat.ps_drop
        self.received, self.dropped = received, dropped

    def stop(self) -> None:
        self._stopping = True
        for _, handle, _ in self.handles:
            self.lib.pcap_breakloop(handle)
        os.write(self._wake_w, b"x")

    def close(self) -> None:
        for _, handle, _ in self.handles:
            self.lib.pcap_close(handle)
        self.handles = []
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)
        self._wake_r = self._wake_w = -1
