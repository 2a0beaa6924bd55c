"""Reading a saved capture packet by packet: classic pcap (µs or ns, any byte order), pcapng."""
from __future__ import annotations

import os
import stat
import struct
from dataclasses import dataclass
from typing import BinaryIO, Iterator, Optional

from capture_engine.errors import InputFileError, UnsupportedLinkTypeError
from capture_engine.pcapfile import LINKTYPE_ETHERNET
from plumbing.redact import redact_patterns

PCAP_MAGICS = {0xA1B2C3D4: 1, 0xA1B23C4D: 1000}  # -> timestamp units per µs fraction
SHB, IDB, PB, SPB, EPB = 0x0A0D0D0A, 1, 2, 3, 6
BYTE_ORDER_MAGIC = 0x1A2B3C4D
OPT_IF_NAME, OPT_IF_TSRESOL, OPT_IF_TSOFFSET = 2, 9, 14
MAX_STAMP = (1 << 32) * 1_000_000  # µs: classic pcap (and our recorder) store 32-bit seconds
MAX_BLOCK = 64 << 20  # a block or record larger than this is a damaged file, not a packet
# pcap's interface ids are 16-bit (the Packet Block's): more interface blocks than that is no
# capture, and each costs memory here and bytes in every pcapng output file's header.
MAX_INTERFACES = 1 << 16
MAX_NAME = 256  # bytes of an if_name kept (a NIC's is 15; the option allows 65,535)


@dataclass(frozen=True)
class Packet:
    interface: int  # index into SaveFile.interfaces
    ts_us: int
    length: int     # on the wire
    data: bytes     # as stored


@dataclass
class _Interface:
    name: str
    linktype: int
    resolution: int = 6   # if_tsresol: 10^-n s per tick, or 2^-n when bit 7 is set
    snaplen: int = 0      # 0: none
    offset_s: int = 0     # if_tsoffset

    def micros(self, ticks: int) -> int:
        n = self.resolution & 0x7F
        if self.resolution & 0x80:
            us = (ticks * 1_000_000) >> n
        else:
            us = ticks * 10 ** (6 - n) if n <= 6 else ticks // 10 ** (n - 6)
        return us + self.offset_s * 1_000_000


class SaveFile:
    """`packets()` of a pcap or pcapng file; `interfaces` are named once the file is read
    (pcapng) or from the start (`scan()` reads only a pcapng file's interface blocks)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.shown = redact_patterns(path)  # a path pasted with a SAS query string in it
        self.interfaces: list[_Interface] = []
        self.count = 0
        self._stream, self._size = self._open()
        magic = self._stream.read(4)
        self._ng = magic == struct.pack("<I", SHB)
        if not self._ng and not any(magic == struct.pack(order + "I", m) for m in PCAP_MAGICS
                                    for order in "<>"):
            self.close()
            raise InputFileError(f"{self.shown} is not a pcap or pcapng file")
        self._stream.seek(0)

    def _open(self) -> tuple[BinaryIO, int]:
        """The file, read twice (interfaces, then packets): a regular file only. O_NONBLOCK:
        opening a FIFO no one writes to would wait for ever."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            raise InputFileError(f"cannot read {self.shown}: {exc.strerror or exc}") from None
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            raise InputFileError(f"{self.shown} is not a regular file (a folder, FIFO, pipe or "
                                 "device): -r reads a saved capture file")
        return os.fdopen(fd, "rb"), info.st_size

    def close(self) -> None:
        self._stream.close()

    def _damaged(self, what: str) -> InputFileError:
        return InputFileError(f"{self.shown} is {what} after {self.count} packets")

    def _read(self, size: int) -> bytes:
        data = self._stream.read(size)
        if len(data) != size:
            raise self._damaged("truncated")
        return data

    def packets(self) -> Iterator[Packet]:
        self._stream.seek(0)
        self.interfaces, self.count = [], 0
        return self._pcapng() if self._ng else self._pcap()

    def scan(self) -> list[str]:
        """The interface names, in order (pcapng: every IDB, the file's packets skipped)."""
        if not self._ng:
            return [""]
        try:
            for _ in self._pcapng(packets=False):
                pass
        except InputFileError:
            pass  # packets() stops there too, after what comes before
        return [i.name for i in self.interfaces]

    def _pcap(self) -> Iterator[Packet]:
        head = self._read(24)
        order = "<" if struct.unpack_from("<I", head)[0] in PCAP_MAGICS else ">"
        magic, linktype = struct.unpack_from(order + "I", head)[0], \
            struct.unpack_from(order + "I", head, 20)[0] & 0xFFFF
        self.interfaces = [_Interface("", linktype)]
        self._ethernet(0)
        per_us = PCAP_MAGICS[magic]
        record = struct.Struct(order + "IIII")
        while True:
            header = self._stream.read(16)
            if not header:
                return
            if len(header) < 16:
                raise self._damaged("truncated")
            sec, frac, caplen, length = record.unpack(header)
            if caplen > MAX_BLOCK:
                raise self._damaged(f"damaged (a record of {caplen} bytes)")
            data = self._read(caplen)
            stamp = sec * 1_000_000 + frac // per_us
            if stamp >= MAX_STAMP:
                raise self._damaged("damaged (a timestamp out of the range of pcap files)")
            self.count += 1
            yield Packet(0, stamp, length, data)

    def _ethernet(self, interface: int) -> None:
        found = self.interfaces[interface].linktype
        if found != LINKTYPE_ETHERNET:
            raise UnsupportedLinkTypeError(
                f"{self.shown}: interface {interface} has link type {found}, not Ethernet (1): "
                "the filters read Ethernet frames")

    def _pcapng(self, packets: bool = True) -> Iterator[Packet]:
        order, base = "<", 0
        while True:
            head = self._stream.read(8)
            if not head:
                return
            if len(head) < 8:
                raise self._damaged("truncated")
            kind = struct.unpack_from(order + "I", head)[0]  # SHB's type reads the same either way
            if kind == SHB:
                order = "<" if self._read(4) == struct.pack("<I", BYTE_ORDER_MAGIC) else ">"
                self._stream.seek(-4, 1)
                base = len(self.interfaces)  # a new section numbers its interfaces from 0
            size = struct.unpack_from(order + "I", head, 4)[0]
            if size < 12 or size % 4 or size > MAX_BLOCK:
                raise self._damaged(f"damaged (a block of {size} bytes)")
            if kind not in (IDB, PB, SPB, EPB) or (kind != IDB and not packets):
                self._skip(size - 8)
                continue
            body = self._read(size - 8)[:-4]
            if kind == IDB:
                self._add_interface(body, order)
                continue
            packet = self._packet(kind, body, order, base)
            if packet is not None:
                self.count += 1
                yield packet

    def _skip(self, size: int) -> None:
        """Past a block not read: one cut short is a truncated file too (as tcpdump says)."""
        end = self._stream.seek(size, 1)
        if end > self._size:
            self._size = os.fstat(self._stream.fileno()).st_size  # a file still growing
            if end > self._size:
                raise self._damaged("truncated")

    def _add_interface(self, body: bytes, order: str) -> None:
        if len(self.interfaces) >= MAX_INTERFACES:
            raise self._damaged(f"damaged (more than {MAX_INTERFACES:,} interface blocks)")
        try:
            self.interfaces.append(_idb(body, order))
        except (struct.error, UnicodeError):
            raise self._damaged("damaged (a short interface block)") from None

    def _packet(self, kind: int, body: bytes, order: str, base: int) -> Optional[Packet]:
        try:
            if kind == SPB:  # no captured length: the original one, cut at the snap length
                length = struct.unpack_from(order + "I", body)[0]
                snaplen = self.interfaces[base].snaplen if base < len(self.interfaces) else 0
                iface, ticks = 0, 0
                data = body[4:4 + (min(length, snaplen) if snaplen else length)]
            else:  # EPB, or the obsolete PB (a 16-bit interface id and a drop count)
                layout = order + ("5I" if kind == EPB else "H2x4I")
                iface, high, low, caplen, length = struct.unpack_from(layout, body)
                ticks, data = (high << 32) | low, body[20:20 + caplen]
                if len(data) != caplen:
                    raise struct.error
        except struct.error:
            raise self._damaged("damaged (a short packet block)") from None
        index = base + iface
        if index >= len(self.interfaces):
            raise self._damaged(f"damaged (a packet of undeclared interface {iface})")
        self._ethernet(index)
        stamp = self.interfaces[index].micros(ticks)
        if not 0 <= stamp < MAX_STAMP:
            raise self._damaged("damaged (a timestamp out of the range of pcap files)")
        return Packet(index, stamp, length, data)


def _idb(body: bytes, order: str) -> _Interface:
    linktype, snaplen = struct.unpack_from(order + "H2xI", body)
    found = _Interface("", linktype, snaplen=snaplen)
    offset = 8
    while offset + 4 <= len(body):
        code, size = struct.unpack_from(order + "HH", body, offset)
        value = body[offset + 4:offset + 4 + size]
        if code == 0:
            break
        if code == OPT_IF_NAME:
            found.name = value[:MAX_NAME].rstrip(b"\0").decode(errors="replace")
        elif code == OPT_IF_TSRESOL and value:
            found.resolution = value[0]
        elif code == OPT_IF_TSOFFSET and size == 8:
            found.offset_s = struct.unpack(order + "q", value)[0]
        offset += 4 + size + (-size % 4)
    return found
