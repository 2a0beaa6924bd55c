"""Raw AF_PACKET backend: filter attached before bind, TPACKET_V3 ring read block by block."""
from __future__ import annotations

import ctypes
import fcntl
import mmap
import os
import select
import socket
import struct
from dataclasses import dataclass
from typing import List, Optional, Sequence

from capture_engine.errors import (
    CaptureFailedError,
    InterfaceNotFoundError,
    UnsupportedLinkTypeError,
)
from capture_engine.output import FdSink
from capture_engine.pollloop import BLOCK_TIMEOUT_MS, serve

SOL_PACKET, SO_ATTACH_FILTER = 263, 26
PACKET_RX_RING, PACKET_STATISTICS, PACKET_VERSION = 5, 6, 10
TPACKET_V3, ETH_P_ALL = 2, 0x0003
TP_STATUS_USER, TP_STATUS_VLAN_VALID, TP_STATUS_VLAN_TPID_VALID = 0x1, 0x10, 0x40
SIOCGIFHWADDR = 0x8927
ARPHRD_ETHER, ARPHRD_LOOPBACK = 1, 772
BLOCK_BYTES = 1 << 20
RING_BYTES = 32 * 1024 * 1024
FRAME_BYTES = 2048

BLOCK_HDR = struct.Struct("<II")          # num_pkts, offset_to_first_pkt (at +12)
PKT_HDR = struct.Struct("<IIIIIIH")       # next, sec, nsec, snaplen, len, status, mac
VLAN = struct.Struct("<IH")               # tp_vlan_tci, tp_vlan_tpid (at +32)
RECORD = struct.Struct("<IIII")
U32 = struct.Struct("<I")


@dataclass
class _Ring:
    name: str
    sock: socket.socket
    ring: mmap.mmap
    blocks: int
    current: int = 0


def _attach_filter(sock: socket.socket, program: Sequence[tuple]) -> None:
    insns = b"".join(struct.pack("<HBBI", *insn) for insn in program)
    buf = ctypes.create_string_buffer(insns, len(insns))
    fprog = struct.pack("HL", len(program), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def _link_type(sock: socket.socket, name: str) -> int:
    reply = fcntl.ioctl(sock.fileno(), SIOCGIFHWADDR, struct.pack("16s16x", name.encode()))
    return struct.unpack_from("16sH", reply)[1]


class RawSocketBackend:
    """One AF_PACKET socket and mmap'd ring per interface, read by one Python thread."""

    name = "rawsocket"

    def __init__(self, ring_bytes: int = RING_BYTES) -> None:
        self.blocks = max(ring_bytes // BLOCK_BYTES, 2)
        self.rings: List[_Ring] = []
        self._wake_r, self._wake_w = os.pipe()
        self._stopping = False
        self.failure: Optional[str] = None
        self.received = self.dropped = 0

    def open(self, interfaces: Sequence[str], program: Sequence[tuple], snaplen: int) -> None:
        for name in interfaces:
            self._open_one(name, program)

    def _open_one(self, name: str, program: Sequence[tuple]) -> None:
        # Protocol 0: the socket receives nothing until bind(), after the filter is attached.
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        try:
            try:
                link = _link_type(sock, name)
            except OSError:
                raise InterfaceNotFoundError(f"unknown network interface: {name}") from None
            if link not in (ARPHRD_ETHER, ARPHRD_LOOPBACK):
                raise UnsupportedLinkTypeError(f"{name} is not an Ethernet interface "
                                               f"(ARPHRD {link})")
            _attach_filter(sock, program)
            sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
            request = struct.pack("7I", BLOCK_BYTES, self.blocks, FRAME_BYTES,
                                  BLOCK_BYTES // FRAME_BYTES * self.blocks,
                                  BLOCK_TIMEOUT_MS, 0, 0)
            sock.setsockopt(SOL_PACKET, PACKET_RX_RING, request)
            ring = mmap.mmap(sock.fileno(), BLOCK_BYTES * self.blocks, mmap.MAP_SHARED,
                             mmap.PROT_READ | mmap.PROT_WRITE)
            sock.bind((name, ETH_P_ALL))
        except OSError as exc:
            sock.close()
            raise CaptureFailedError(f"cannot capture on {name}: {exc.strerror or exc}") from None
        except Exception:
            sock.close()
            raise
        self.rings.append(_Ring(name, sock, ring, self.blocks))

    def make_sink(self) -> FdSink:
        return FdSink()

    def run(self, recorder) -> None:
        """The reading loop (its own thread): until stop(), a limit, or a failure."""
        sources = {ring.sock.fileno(): (lambda events, ring=ring:
                                        self._service(ring, events, recorder))
                   for ring in self.rings}
        serve(sources, self._wake_r, lambda: self._running(recorder), self.refresh_stats,
              select.POLLIN | select.POLLERR)

    def _running(self, recorder) -> bool:
        return not self._stopping and not recorder.done and self.failure is None

    def drain(self, recorder) -> None:
        for ring in self.rings:
            self._read_blocks(ring, recorder)

    def _service(self, ring: _Ring, events: int, recorder) -> int:
        if events & select.POLLERR:
            err = ring.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self.failure = f"capture on {ring.name} failed: {os.strerror(err)}"
        return self._read_blocks(ring, recorder)

    def _read_blocks(self, ring: _Ring, recorder) -> int:
        mem, handled = ring.ring, 0
        while not recorder.done:
            base = ring.current * BLOCK_BYTES
            if not U32.unpack_from(mem, base + 8)[0] & TP_STATUS_USER:
                break
            count, offset = BLOCK_HDR.unpack_from(mem, base + 12)
            recorder.accept_batch(self._records(mem, base + offset, count), count)
            U32.pack_into(mem, base + 8, 0)  # hand the block back to the kernel
            ring.current = (ring.current + 1) % ring.blocks
            handled += count
        return handled

    @staticmethod
    def _records(mem: mmap.mmap, offset: int, count: int) -> bytes:
        parts = []
        unpack, pack = PKT_HDR.unpack_from, RECORD.pack
        for _ in range(count):
            nxt, sec, nsec, snap, length, status, mac = unpack(mem, offset)
            data = mem[offset + mac:offset + mac + snap]
            if status & TP_STATUS_VLAN_VALID:  # put back the tag the NIC stripped, as libpcap does
                tci, tpid = VLAN.unpack_from(mem, offset + 32)
                tpid = tpid if status & TP_STATUS_VLAN_TPID_VALID else 0x8100
                data = data[:12] + struct.pack(">HH", tpid, tci & 0xFFFF) + data[12:]
                snap, length = snap + 4, length + 4
            parts.append(pack(sec, nsec // 1000, snap, length))
            parts.append(data)
            offset += nxt
        return b"".join(parts)

    def refresh_stats(self) -> None:
        for ring in self.rings:
            try:
                packets, drops = struct.unpack(
                    "II", ring.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 12)[:8])
            except OSError:
                continue
            self.received += packets  # the kernel resets these counters on every read
            self.dropped += drops

    def stop(self) -> None:
        self._stopping = True
        os.write(self._wake_w, b"x")

    def close(self) -> None:
        for ring in self.rings:
            ring.ring.close()
            ring.sock.close()
        self.rings = []
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)
        self._wake_r = self._wake_w = -1
