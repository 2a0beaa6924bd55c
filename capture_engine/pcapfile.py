"""The pcap file itself: its headers, its records, the record formats the recorder counts in,
a plain file-descriptor sink, and cutting a file after its last whole record."""
from __future__ import annotations

import os
import struct
from typing import Callable, Iterator, Optional, Protocol

FILE_HEADER = struct.Struct("<IHHiIII")
RECORD_HEADER = struct.Struct("<IIII")
PCAP_MAGIC = 0xA1B2C3D4
LINKTYPE_ETHERNET = 1
HEADER_SIZE = FILE_HEADER.size  # 24


def file_header(snaplen: int, linktype: int = LINKTYPE_ETHERNET) -> bytes:
    return FILE_HEADER.pack(PCAP_MAGIC, 2, 4, 0, 0, snaplen, linktype)


def iter_records(data: bytes, start: int = 0) -> Iterator[tuple[int, int, int]]:
    """(offset, end, timestamp in µs) of each complete record in `data` from `start`."""
    offset, size = start, len(data)
    while offset + 16 <= size:
        sec, usec, caplen, _ = RECORD_HEADER.unpack_from(data, offset)
        end = offset + 16 + caplen
        if end > size:
            return
        yield offset, end, sec * 1_000_000 + usec
        offset = end


class RecordFormat(Protocol):
    """How a file's records are laid out: the recorder counts and cuts them in this format."""

    name: str
    min_record: int  # bytes of a record without data

    def file_header(self, snaplen: int) -> bytes: ...

    def encode(self, data: bytes, interface: Optional[str]) -> bytes:
        """Classic pcap records from one interface, in this format."""

    def records(self, data: bytes, start: int = 0) -> Iterator[tuple[int, int, int]]:
        """(offset, end, timestamp in µs) of each complete record."""


class PcapFormat:
    """Classic pcap: the backends' own record format, kept as it is."""

    name = "pcap"
    min_record = RECORD_HEADER.size

    def file_header(self, snaplen: int) -> bytes:
        return file_header(snaplen)

    def encode(self, data: bytes, interface: Optional[str]) -> bytes:
        return data

    def records(self, data: bytes, start: int = 0) -> Iterator[tuple[int, int, int]]:
        return iter_records(data, start)


PCAP = PcapFormat()


class FdSink:
    """Writes a file through a plain file descriptor (the raw-socket backend; any backend's
    pcapng file), starting with `header(snaplen)`."""

    def __init__(self, header: Callable[[int], bytes] = file_header) -> None:
        self.fd = -1
        self.path = ""
        self._offset = 0
        self._header = header

    def open(self, path: str, snaplen: int) -> None:
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o640)
        os.fchmod(self.fd, 0o640)  # whatever the umask: captures hold other people's traffic
        self._offset = 0
        self.append(self._header(snaplen))

    def offset(self) -> int:
        return self._offset

    def append(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self.fd, view)
            self._offset += written
            view = view[written:]

    def flush(self) -> None:
        """Every append is already a write(2)."""

    def truncate(self, offset: int) -> None:
        os.ftruncate(self.fd, offset)
        os.lseek(self.fd, offset, os.SEEK_SET)
        self._offset = offset

    def read(self, start: int, end: int) -> bytes:
        return os.pread(self.fd, end - start, start)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def trim_to_records(path: str, start: int,
                    records: Callable[[bytes], Iterator[tuple[int, int, int]]] = iter_records
                    ) -> tuple[int, int]:
    """Truncate `path` after its last complete record at or after `start`."""
    with open(path, "r+b") as stream:
        stream.seek(start)
        data = stream.read()
        end, count = start, 0
        for _, record_end, _ in records(data):
            end, count = start + record_end, count + 1
        stream.truncate(end)
    return end, count
