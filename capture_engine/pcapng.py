"""pcapng output: a Section Header, one Interface Description Block per NIC, Enhanced Packet Blocks.

The recorder receives classic pcap records from the backends (one batch = one interface) and
turns them into Enhanced Packet Blocks here, before it counts any byte: the byte limits then
hold for the pcapng file as written (a 32-byte block header and data padded to 4 bytes, where
classic pcap has a 16-byte header and no padding). Every file, each ring file too, starts with
the Section Header and all the capture's interfaces, in the order given, so it reads alone.
"""
from __future__ import annotations

import ctypes
import errno
import struct
from typing import Iterator, Optional, Sequence

from capture_engine import pcaplib
from capture_engine.pcapfile import HEADER_SIZE as CLASSIC_FILE_HEADER
from capture_engine.pcapfile import LINKTYPE_ETHERNET, iter_records

SHB, IDB, EPB = 0x0A0D0D0A, 0x00000001, 0x00000006
BYTE_ORDER_MAGIC = 0x1A2B3C4D
OPT_END, OPT_IF_NAME = 0, 2
MAX_OPTION = 0xFFFF
SHB_BODY = struct.Struct("<IIIHHq")        # type, length, magic, major, minor, section length
IDB_HEAD = struct.Struct("<IIHHI")         # type, length, link type, reserved, snap length
EPB_HEAD = struct.Struct("<IIIIIII")       # type, length, interface, ts high, ts low, caplen, len
U32 = struct.Struct("<I")
CLASSIC = struct.Struct("<IIII")           # ts sec, ts usec, caplen, len
EPB_OVERHEAD = EPB_HEAD.size + U32.size    # 32: an Enhanced Packet Block without data


def _pad(size: int) -> int:
    return -size % 4


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + value + bytes(_pad(len(value)))


def section_header() -> bytes:
    body = SHB_BODY.pack(SHB, 28, BYTE_ORDER_MAGIC, 1, 0, -1)
    return body + U32.pack(28)


def interface_block(name: str, snaplen: int) -> bytes:
    """An IDB for an Ethernet interface; timestamps in µs (the default if_tsresol)."""
    # An option's length is 16-bit: a name read from a file (not UTF-8 bytes read as U+FFFD,
    # 3 bytes each) can outgrow it; keep what fits, whole characters.
    raw = name.encode()[:MAX_OPTION].decode(errors="ignore").encode()
    options = _option(OPT_IF_NAME, raw) + _option(OPT_END, b"") if raw else b""
    length = IDB_HEAD.size + len(options) + 4
    return IDB_HEAD.pack(IDB, length, LINKTYPE_ETHERNET, 0, snaplen) + options + U32.pack(length)


class PcapngFormat:
    """The record format of a pcapng file over fixed interfaces (a batch's interface = its id)."""

    name = "pcapng"
    min_record = EPB_OVERHEAD  # the smallest record: an empty Enhanced Packet Block

    def __init__(self, interfaces: Sequence[str], keys: Optional[Sequence[str]] = None) -> None:
        """`keys`: what batches call each interface, if not its name (a saved file may name
        several interfaces alike, or none)."""
        self.interfaces = tuple(interfaces) or ("",)
        self._ids = {key: n for n, key in enumerate(keys or self.interfaces)}

    def file_header(self, snaplen: int) -> bytes:
        return section_header() + b"".join(interface_block(name, snaplen)
                                           for name in self.interfaces)

    def interface_id(self, interface: Optional[str]) -> int:
        """The interface's IDB number; a batch of unknown origin goes to the first one."""
        return self._ids.get(interface or "", 0)

    def encode(self, data: bytes, interface: Optional[str]) -> bytes:
        """Classic pcap records (from one interface) as Enhanced Packet Blocks."""
        ident, view = self.interface_id(interface), memoryview(data)
        parts: list[bytes | memoryview] = []
        for start, end, ts in iter_records(data):
            caplen = end - start - CLASSIC.size
            length = CLASSIC.unpack_from(data, start)[3]
            total = EPB_OVERHEAD + caplen + _pad(caplen)
            parts.append(EPB_HEAD.pack(EPB, total, ident, ts >> 32, ts & 0xFFFFFFFF, caplen,
                                       length))
            parts.append(view[start + CLASSIC.size:end])
            parts.append(bytes(_pad(caplen)) + U32.pack(total))
        return b"".join(parts)

    def records(self, data: bytes, start: int = 0) -> Iterator[tuple[int, int, int]]:
        """(offset, end, timestamp in µs) of each complete Enhanced Packet Block."""
        offset, size = start, len(data)
        while offset + EPB_HEAD.size <= size:
            kind, total, _, high, low = struct.unpack_from("<IIIII", data, offset)
            end = offset + total
            if kind != EPB or total < EPB_OVERHEAD or end > size:
                return
            yield offset, end, (high << 32) | low
            offset = end


class MemoryDumper:
    """libpcap's pcap_dump into a growing memory buffer (open_memstream): what one
    pcap_dispatch read, as a batch of classic records with no Python per packet, for a
    file Python writes itself (pcapng: libpcap has no pcapng writer). Dispatch thread only."""

    def __init__(self, lib: ctypes.CDLL, snaplen: int) -> None:
        self.lib, self.libc = lib, ctypes.CDLL(None, use_errno=True)
        self.libc.open_memstream.restype = ctypes.c_void_p
        self.libc.open_memstream.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        self.libc.fseek.argtypes = [ctypes.c_void_p, ctypes.c_long, ctypes.c_int]
        self.libc.fclose.argtypes = [ctypes.c_void_p]
        self.libc.free.argtypes = [ctypes.c_void_p]
        self._buffer, self._size = ctypes.c_void_p(), ctypes.c_size_t()
        stream = self.libc.open_memstream(ctypes.byref(self._buffer), ctypes.byref(self._size))
        if not stream:
            raise OSError(ctypes.get_errno(), "open_memstream failed")
        dead = lib.pcap_open_dead(pcaplib.DLT_EN10MB, snaplen)
        self.dumper: Optional[int] = lib.pcap_dump_fopen(dead, stream) if dead else None
        if dead:
            lib.pcap_close(dead)
        if not self.dumper:
            self.libc.fclose(stream)
            self.libc.free(self._buffer)
            raise OSError(errno.EIO, "pcap_dump_fopen on a memory stream failed")
        self._stream = stream

    def take(self) -> bytes:
        """The records dumped since the last take (the buffer is reused)."""
        self.lib.pcap_dump_flush(self.dumper)  # sets the buffer and its size
        size = self._size.value - CLASSIC_FILE_HEADER
        data = ctypes.string_at(self._buffer.value + CLASSIC_FILE_HEADER, size) \
            if size > 0 and self._buffer.value else b""
        self.libc.fseek(self._stream, CLASSIC_FILE_HEADER, 0)  # SEEK_SET
        return data

    def close(self) -> None:
        if self.dumper:
            self.lib.pcap_dump_close(self.dumper)  # fclose: the buffer is then ours to free
            self.libc.free(self._buffer)
            self.dumper = None
