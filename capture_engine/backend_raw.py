"""Raw AF_PACKET backend: filter attached before bind, TPACKET_V3 ring read block by block."""
from __future__ import annotations

import errno
import fcntl
import math
import mmap
import os
import select
import socket
import struct
from dataclasses import dataclass
from typing import AbstractSet, Optional, Sequence

from capture_engine import bpf, kernel_filter
from capture_engine.attach import Insn
from capture_engine.errors import (
    CaptureFailedError,
    InterfaceNotFoundError,
    UnsupportedLinkTypeError,
)
from capture_engine.pcapfile import FdSink
from capture_engine.pollloop import (
    BLOCK_TIMEOUT_MS,
    PendingChanges,
    Retiring,
    Service,
    serve,
)
from capture_engine.seams import PacketRecorder, SourceOptions

SOL_PACKET = 263
PACKET_RX_RING, PACKET_STATISTICS, PACKET_VERSION = 5, 6, 10
TPACKET_V3, ETH_P_ALL = 2, 0x0003
TP_STATUS_USER, TP_STATUS_VLAN_VALID, TP_STATUS_VLAN_TPID_VALID = 0x1, 0x10, 0x40
SIOCGIFHWADDR = 0x8927
ARPHRD_ETHER, ARPHRD_LOOPBACK = 1, 772
# The kernel retires a block after BLOCK_TIMEOUT_MS however little it holds, so a ring holds
# blocks x timeout seconds of a slow stream and RING_BYTES of a fast one: 128 blocks of
# 256 KiB hold 25.6 s below ~1.3 MB/s and 32 MiB above, per interface.
RING_BYTES = 32 * 1024 * 1024
STALL_SECONDS = 25.0
MIN_BLOCK_BYTES = 64 * 1024
FRAME_BYTES = 2048
IMMEDIATE_TIMEOUT_MS = 1  # --immediate-mode: a block is handed over 1 ms after its first packet

BLOCK_HDR = struct.Struct("<II")          # num_pkts, offset_to_first_pkt (at +12)
PKT_HDR = struct.Struct("<IIIIIIH")       # next, sec, nsec, snaplen, len, status, mac
VLAN = struct.Struct("<IH")               # tp_vlan_tci, tp_vlan_tpid (at +32)
RECORD = struct.Struct("<IIII")
U32 = struct.Struct("<I")


def ring_geometry(ring_bytes: int = RING_BYTES, stall_seconds: float = STALL_SECONDS,
                  timeout_ms: int = BLOCK_TIMEOUT_MS) -> tuple[int, int]:
    """(block bytes, blocks): enough blocks to outlast a stall of `stall_seconds` when each
    is retired nearly empty, each as large as the byte budget allows (a power of two); no
    more blocks of the smallest size than `ring_bytes` holds (-B, --immediate-mode)."""
    blocks = max(math.ceil(stall_seconds * 1000 / timeout_ms), 2)
    blocks = min(blocks, max(ring_bytes // MIN_BLOCK_BYTES, 2))
    block = 1 << max((ring_bytes // blocks).bit_length() - 1, 0)
    block = max(block, MIN_BLOCK_BYTES)
    return block, max(ring_bytes // block, blocks)


@dataclass
class _Ring:
    name: str
    sock: socket.socket
    ring: mmap.mmap
    blocks: int
    block_bytes: int
    current: int = 0

    def close(self) -> None:
        self.ring.close()
        self.sock.close()


def _link_type(sock: socket.socket, name: str) -> int:
    reply = fcntl.ioctl(sock.fileno(), SIOCGIFHWADDR, struct.pack("16s16x", name.encode()))
    link_type: int = struct.unpack_from("16sH", reply)[1]  # ifr_hwaddr.sa_family
    return link_type


class RawSocketBackend:
    """One AF_PACKET socket and mmap'd ring per interface, read by one Python thread."""

    name = "rawsocket"

    def __init__(self, ring_bytes: int = RING_BYTES,
                 options: SourceOptions = SourceOptions()) -> None:
        self.options = options
        self.timeout_ms = IMMEDIATE_TIMEOUT_MS if options.immediate else BLOCK_TIMEOUT_MS
        self.block_bytes, self.blocks = ring_geometry(options.buffer_bytes or ring_bytes,
                                                      timeout_ms=self.timeout_ms)
        self.rings: list[_Ring] = []
        self.optional: AbstractSet[str] = frozenset()
        self._program: Sequence[Insn] = ()
        self._changes, self._retiring = PendingChanges(), Retiring()
        # Set by run(): a source is read into it one last time before it is closed.
        self._recorder: Optional[PacketRecorder] = None
        self._wake_r, self._wake_w = os.pipe()
        self._stopping = False
        self.failure: Optional[str] = None
        self.received = self.dropped = 0

    def open(self, interfaces: Sequence[str], program: Sequence[Insn], snaplen: int,
             optional: AbstractSet[str] = frozenset(),
             userland: Optional[Sequence[Insn]] = None) -> None:
        """`program` is attached before bind(): no packet is seen without it (`userland`,
        for libpcap's own re-filter, has no use here)."""
        self._program = bpf.direction_rule(program, self.options.direction)
        self.optional = optional
        for name in interfaces:
            self.rings.append(self._open_one(name))

    def _open_one(self, name: str) -> _Ring:
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
            kernel_filter.attach(sock, self._program, name)
            sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
            request = struct.pack("7I", self.block_bytes, self.blocks, FRAME_BYTES,
                                  self.block_bytes // FRAME_BYTES * self.blocks,
                                  self.timeout_ms, 0, 0)
            sock.setsockopt(SOL_PACKET, PACKET_RX_RING, request)
            ring = mmap.mmap(sock.fileno(), self.block_bytes * self.blocks, mmap.MAP_SHARED,
                             mmap.PROT_READ | mmap.PROT_WRITE)
            sock.bind((name, ETH_P_ALL))
        except OSError as exc:
            sock.close()
            raise CaptureFailedError(f"cannot capture on {name}: {exc.strerror or exc}") from None
        except Exception:
            sock.close()
            raise
        return _Ring(name, sock, ring, self.blocks, self.block_bytes)

    def attach(self, name: str) -> None:
        """A new socket on `name` (call it inside the capture's namespace), polled from the
        next round on; it replaces any earlier one of that name."""
        ring = self._open_one(name)
        self._changes.push(lambda: self._replace(name, ring))
        os.write(self._wake_w, b"x")

    def detach(self, name: str) -> None:
        """Stop capturing on `name` once its last ring blocks are read."""
        self._changes.push(lambda: self._retiring.add(name))
        os.write(self._wake_w, b"x")

    def _replace(self, name: str, ring: Optional[_Ring]) -> None:
        self._retiring.cancel(name)
        for old in [r for r in self.rings if r.name == name]:
            if self._recorder is not None:
                self._read_blocks(old, self._recorder)
            self._collect(old)
            old.close()
            self.rings.remove(old)
        if ring is not None:
            self.rings.append(ring)

    def _housekeeping(self) -> bool:
        """In the loop thread, between polls: apply queued changes, close retired sources."""
        changed = self._changes.apply()
        for name in self._retiring.due():
            self._replace(name, None)
            changed = True
        return changed

    def make_sink(self) -> FdSink:
        return FdSink()

    def run(self, recorder: PacketRecorder) -> None:
        """The reading loop (its own thread): until stop(), a limit, or a failure."""
        self._recorder = recorder
        serve(lambda: self._sources(recorder), self._wake_r,
              lambda: self._running(recorder), self.refresh_stats,
              select.POLLIN | select.POLLERR, self._housekeeping,
              naps=not self.options.immediate)

    def _sources(self, recorder: PacketRecorder) -> dict[int, Service]:
        return {ring.sock.fileno(): self._servicer(ring, recorder) for ring in self.rings}

    def _servicer(self, ring: _Ring, recorder: PacketRecorder) -> Service:
        return lambda events: self._service(ring, events, recorder)

    def _running(self, recorder: PacketRecorder) -> bool:
        return not self._stopping and not recorder.done and self.failure is None

    def drain(self, recorder: PacketRecorder) -> None:
        for ring in self.rings:
            self._read_blocks(ring, recorder)

    def _service(self, ring: _Ring, events: int, recorder: PacketRecorder) -> int:
        if events & select.POLLERR:
            err = ring.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            # ENETDOWN: the interface went down or away; the session's link watch decides
            # whether that ends the capture (the socket resumes by itself once it is up).
            if err and err != errno.ENETDOWN and ring.name not in self.optional:
                self.failure = f"capture on {ring.name} failed: {os.strerror(err)}"
        return self._read_blocks(ring, recorder)

    def _read_blocks(self, ring: _Ring, recorder: PacketRecorder) -> int:
        mem, handled, size = ring.ring, 0, ring.block_bytes
        while not recorder.done:
            base = ring.current * size
            if not U32.unpack_from(mem, base + 8)[0] & TP_STATUS_USER:
                break
            count, offset = BLOCK_HDR.unpack_from(mem, base + 12)
            # One socket per interface: its blocks are that interface's (pcapng's IDB).
            recorder.accept_batch(self._records(mem, base + offset, count), count, ring.name)
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

    def _collect(self, ring: _Ring) -> None:
        try:
            packets, drops = struct.unpack(
                "II", ring.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 12)[:8])
        except OSError:
            return
        self.received += packets  # the kernel resets these counters on every read
        self.dropped += drops

    def refresh_stats(self) -> None:
        for ring in self.rings:
            self._collect(ring)

    def stop(self) -> None:
        self._stopping = True
        if self._wake_w >= 0:
            os.write(self._wake_w, b"x")

    def close(self) -> None:
        """Idempotent: a failed start and the session's cleanup may both call it."""
        self._changes.apply()
        for ring in self.rings:
            ring.close()
        self.rings = []
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._wake_r = self._wake_w = -1
