"""libpcap backend: per-packet path in C (pcap_dump as the callback), one dispatch thread."""
from __future__ import annotations

import ctypes
import errno
import os
import socket
from dataclasses import dataclass
from typing import AbstractSet, Optional, Sequence

from capture_engine import kernel_filter, pcaplib
from capture_engine.attach import Insn
from capture_engine.bpf import WHOLE_PACKET
from capture_engine.errors import (
    CaptureFailedError,
    InterfaceNotFoundError,
    UnsupportedLinkTypeError,
)
from capture_engine.pcapng import MemoryDumper
from capture_engine.pollloop import (
    BLOCK_TIMEOUT_MS,
    PendingChanges,
    Retiring,
    Service,
    serve,
)
from capture_engine.seams import PacketRecorder, SourceOptions

BUFFER_BYTES = 32 * 1024 * 1024
PCAP_ERROR_BREAK = -2
PCAP_ERROR_NO_SUCH_DEVICE = -5
SEEK_SET = 0
IOFBF, FSETLOCKING_BYCALLER = 0, 2
WRITE_BUFFER = 256 * 1024
ETH_P_ALL = 0x0003
# The protocol libpcap binds its socket to until our filter is on it: below 0x0600 an Ethernet
# type field is a length, so no frame from a NIC carries it, and none is defined there.
QUIET_PROTOCOL = 0x05FF


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.fwrite.restype = ctypes.c_size_t
    libc.fwrite.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_void_p]
    libc.fseek.argtypes = [ctypes.c_void_p, ctypes.c_long, ctypes.c_int]
    libc.fileno.argtypes = [ctypes.c_void_p]
    libc.ferror.argtypes = [ctypes.c_void_p]
    libc.fdopen.restype = ctypes.c_void_p
    libc.fdopen.argtypes = [ctypes.c_int, ctypes.c_char_p]
    libc.fclose.argtypes = [ctypes.c_void_p]
    libc.setvbuf.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_size_t]
    getattr(libc, "__fsetlocking").argtypes = [ctypes.c_void_p, ctypes.c_int]
    return libc


def _os_error(default: str) -> OSError:
    err = ctypes.get_errno()
    return OSError(err, os.strerror(err) if err else default)


class LibpcapSink:
    """A pcap file written by libpcap's dumper; Python only touches it at batch boundaries."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self.lib, self.libc = lib, _libc()
        self.dumper: Optional[int] = None
        self.path = ""
        self._buffer = ctypes.create_string_buffer(WRITE_BUFFER)

    def open(self, path: str, snaplen: int) -> None:
        """pcap_dump_fopen on our own FILE: never over an existing file (O_EXCL), a large
        buffer, and no stdio locking (only the dispatch thread writes), which a
        multi-threaded process would otherwise pay per fwrite.
        """
        self.path = path
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o640)
        os.fchmod(fd, 0o640)  # captures hold other people's traffic
        ctypes.set_errno(0)
        stream = self.libc.fdopen(fd, b"wb")
        if not stream:
            error = _os_error("cannot open the file")
            os.close(fd)
            raise error
        self.libc.setvbuf(stream, self._buffer, IOFBF, len(self._buffer))
        getattr(self.libc, "__fsetlocking")(stream, FSETLOCKING_BYCALLER)
        # The header comes from a dead handle of the file's own snap length: the dumper is
        # only a FILE afterwards, so it never depends on a capture handle that may go away.
        dead = self.lib.pcap_open_dead(pcaplib.DLT_EN10MB, snaplen)
        dumper = self.lib.pcap_dump_fopen(dead, stream) if dead else None
        reason = (self.lib.pcap_geterr(dead) or b"").decode(errors="replace") if dead else ""
        if dead:
            self.lib.pcap_close(dead)
        if not dumper:
            self.libc.fclose(stream)
            raise OSError(errno.EIO, reason or "pcap_dump_fopen failed")
        self.dumper = dumper
        self.flush()

    # ctypes calls are untyped: each result is typed by the restype it was declared with.
    def fileno(self) -> int:
        fd: int = self.libc.fileno(self._file())  # c_int
        return fd

    def _file(self) -> Optional[int]:
        stream: Optional[int] = self.lib.pcap_dump_file(self.dumper)  # c_void_p: FILE *
        return stream

    def offset(self) -> int:
        position: int = self.lib.pcap_dump_ftell(self.dumper)  # c_long
        return position

    def append(self, data: bytes) -> None:
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


@dataclass
class _Handle:
    name: str
    handle: int
    fd: int = -1


class LibpcapBackend:
    """One pcap handle per interface, all dispatched by one thread into one dumper."""

    name = "libpcap"

    def __init__(self, buffer_bytes: int = BUFFER_BYTES,
                 options: SourceOptions = SourceOptions()) -> None:
        self.lib = pcaplib.load()
        self.buffer_bytes = options.buffer_bytes or buffer_bytes
        self.options = options
        self.handles: list[_Handle] = []
        self.optional: AbstractSet[str] = frozenset()
        self._program: Sequence[Insn] = ()
        self._userland: Sequence[Insn] = ()
        self._snaplen = WHOLE_PACKET
        self._changes, self._retiring = PendingChanges(), Retiring()
        # Set by run(): a source is read into it one last time before it is closed.
        self._recorder: Optional[PacketRecorder] = None
        self._sink: Optional[LibpcapSink] = None  # make_sink()'s: the recorder's file
        # Without make_sink() (a pcapng file, written in Python): batches through memory.
        self._memory: Optional[MemoryDumper] = None
        self._wake_r, self._wake_w = os.pipe()
        self._stopping = False
        self.failure: Optional[str] = None
        self.received = self.dropped = 0
        self._retired = [0, 0]  # received, dropped of handles already closed
        self._dump = ctypes.cast(self.lib.pcap_dump, ctypes.c_void_p)

    def _error(self, handle: int) -> str:
        return (self.lib.pcap_geterr(handle) or b"").decode(errors="replace")

    def open(self, interfaces: Sequence[str], program: Sequence[Insn], snaplen: int,
             optional: AbstractSet[str] = frozenset(),
             userland: Optional[Sequence[Insn]] = None) -> None:
        """`program` goes in the kernel; `userland` (default: the same) is the filter libpcap
        runs itself on the ring blocks filled before it set its own: it cannot read a
        packet's direction, so it must accept at least what `program` does."""
        self._program, self._snaplen = program, min(snaplen or WHOLE_PACKET, WHOLE_PACKET)
        self._userland = program if userland is None else userland
        self.optional = optional
        for name in interfaces:
            self._open_one(name, self.handles)

    def _open_one(self, name: str, into: list[_Handle]) -> _Handle:
        """A handle on `name`, added to `into` at once so that a failure closes it too."""
        errbuf = ctypes.create_string_buffer(pcaplib.PCAP_ERRBUF_SIZE)
        handle = self.lib.pcap_create(name.encode(), errbuf)
        if not handle:
            raise CaptureFailedError(f"pcap_create({name}): {errbuf.value.decode()}")
        entry = _Handle(name, handle)
        into.append(entry)
        lib = self.lib
        lib.pcap_set_snaplen(handle, self._snaplen)
        lib.pcap_set_promisc(handle, 0)
        lib.pcap_set_timeout(handle, BLOCK_TIMEOUT_MS)
        lib.pcap_set_buffer_size(handle, self.buffer_bytes)
        lib.pcap_set_immediate_mode(handle, int(self.options.immediate))
        set_protocol = pcaplib.optional(lib, "pcap_set_protocol_linux")
        quiet = set_protocol is not None and set_protocol(handle, QUIET_PROTOCOL) == 0
        status = lib.pcap_activate(handle)
        if status < 0:
            reason = self._error(handle) or lib.pcap_statustostr(status).decode()
            cls = InterfaceNotFoundError if status == PCAP_ERROR_NO_SUCH_DEVICE \
                else CaptureFailedError
            raise cls(f"cannot capture on {name}: {reason}")
        if lib.pcap_datalink(handle) != pcaplib.DLT_EN10MB:
            raise UnsupportedLinkTypeError(
                f"{name} is not an Ethernet interface (link type {lib.pcap_datalink(handle)})")
        direction = pcaplib.PCAP_DIRECTIONS[self.options.direction]
        if direction and lib.pcap_setdirection(handle, direction) != 0:
            raise CaptureFailedError(f"cannot capture only {self.options.direction}bound "
                                     f"packets on {name}: {self._error(handle)}")
        compiled = pcaplib.make_program(self._userland)  # pcap_setfilter keeps its own copy
        if lib.pcap_setfilter(handle, ctypes.byref(compiled)) != 0:
            raise CaptureFailedError(f"cannot set the filter on {name}: {self._error(handle)}")
        entry.fd = lib.pcap_get_selectable_fd(handle)
        self._take_over(entry.fd, name, quiet)
        if lib.pcap_setnonblock(handle, 1, errbuf) != 0:
            raise CaptureFailedError(f"pcap_setnonblock({name}): {errbuf.value.decode()}")
        return entry

    def _take_over(self, fd: int, name: str, quiet: bool) -> None:
        """Our program in the kernel in place of libpcap's copy, then (when libpcap could bind
        to a protocol no frame carries) the socket opened to every frame: no packet enters
        the ring before the program that reads its direction."""
        with socket.socket(fileno=os.dup(fd)) as sock:  # the same socket, closed apart
            kernel_filter.attach(sock, self._program, name)
            kernel_filter.check_attached(fd, self._program, name)
            if quiet:
                try:
                    sock.bind((name, ETH_P_ALL))
                except OSError as exc:
                    raise CaptureFailedError(f"cannot capture on {name}: "
                                             f"{exc.strerror or exc}") from None

    def attach(self, name: str) -> None:
        """A new handle on `name` (call it inside the capture's namespace), dispatched from
        the next round on; it replaces any earlier one of that name."""
        opened: list[_Handle] = []
        try:
            entry = self._open_one(name, opened)
        except BaseException:
            for failed in opened:
                self.lib.pcap_close(failed.handle)
            raise
        self._changes.push(lambda: self._replace(name, entry))
        os.write(self._wake_w, b"x")

    def detach(self, name: str) -> None:
        """Stop capturing on `name` once its last ring blocks are read."""
        self._changes.push(lambda: self._retiring.add(name))
        os.write(self._wake_w, b"x")

    def _housekeeping(self) -> bool:
        """In the loop thread, between polls: apply queued changes, close retired sources."""
        changed = self._changes.apply()
        for name in self._retiring.due():
            self._replace(name, None)
            changed = True
        return changed

    def _replace(self, name: str, entry: Optional[_Handle]) -> None:
        self._retiring.cancel(name)
        for old in [h for h in self.handles if h.name == name]:
            if self._recorder is not None:
                self._dispatch(old, self._recorder)
            stat = self._stats(old.handle)
            self._retired = [self._retired[0] + stat[0], self._retired[1] + stat[1]]
            self.lib.pcap_close(old.handle)
            self.handles.remove(old)
        if entry is not None:
            self.handles.append(entry)

    def make_sink(self) -> LibpcapSink:
        self._sink = LibpcapSink(self.lib)
        return self._sink

    def run(self, recorder: PacketRecorder) -> None:
        """The dispatch loop (its own thread): until stop(), a limit, or a failure."""
        self._recorder = recorder
        serve(lambda: self._sources(recorder), self._wake_r, lambda: self._running(recorder),
              self.refresh_stats, changed=self._housekeeping, naps=not self.options.immediate)

    def _sources(self, recorder: PacketRecorder) -> dict[int, Service]:
        return {entry.fd: self._servicer(entry, recorder) for entry in self.handles}

    def _servicer(self, entry: _Handle, recorder: PacketRecorder) -> Service:
        return lambda _events: self._dispatch(entry, recorder)

    def _running(self, recorder: PacketRecorder) -> bool:
        return not self._stopping and not recorder.done and self.failure is None

    def drain(self, recorder: PacketRecorder) -> None:
        """Read whatever the kernel has already handed over (used after the stop time)."""
        for entry in self.handles:
            self._dispatch(entry, recorder)

    def _dispatch(self, entry: _Handle, recorder: PacketRecorder) -> int:
        if recorder.done:
            return 0
        sink = self._sink
        if sink is None:
            count = self._dispatch_batch(entry, recorder)
        else:
            start = sink.offset()
            count = self.lib.pcap_dispatch(entry.handle, -1, self._dump, sink.dumper)
            if count > 0 or sink.offset() != start:
                recorder.after_direct_batch(start, max(count, 0))
        # An enslaved interface (a VF) that went away: the link watch detaches it once its
        # last blocks are read; until then libpcap reports the loss on every empty read.
        if count < 0 and count != PCAP_ERROR_BREAK and entry.name not in self.optional:
            self.failure = f"capture on {entry.name} failed: {self._error(entry.handle)}"
        return max(count, 0)

    def _dispatch_batch(self, entry: _Handle, recorder: PacketRecorder) -> int:
        """One pcap_dispatch into memory, handed over as a batch from `entry`'s interface."""
        if self._memory is None:
            self._memory = MemoryDumper(self.lib, self._snaplen)
        count: int = self.lib.pcap_dispatch(entry.handle, -1, self._dump, self._memory.dumper)
        data = self._memory.take()
        if data:
            recorder.accept_batch(data, count if count > 0 else None, entry.name)
        return count

    def _stats(self, handle: int) -> tuple[int, int]:
        stat = pcaplib.PcapStat()
        if self.lib.pcap_stats(handle, ctypes.byref(stat)) != 0:
            return 0, 0
        return stat.ps_recv, stat.ps_drop

    def refresh_stats(self) -> None:
        received, dropped = self._retired
        for entry in self.handles:
            got, lost = self._stats(entry.handle)
            received, dropped = received + got, dropped + lost
        self.received, self.dropped = received, dropped

    def stop(self) -> None:
        self._stopping = True
        for entry in self.handles:
            self.lib.pcap_breakloop(entry.handle)
        if self._wake_w >= 0:
            os.write(self._wake_w, b"x")

    def close(self) -> None:
        """Idempotent: a failed start and the session's cleanup may both call it."""
        self._changes.apply()
        for entry in self.handles:
            self.lib.pcap_close(entry.handle)
        self.handles = []
        if self._memory is not None:
            self._memory.close()
            self._memory = None
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._wake_r = self._wake_w = -1
