"""The capture's seams: a backend, the recorder it feeds, and the pcap file sink it writes."""
from __future__ import annotations

from dataclasses import dataclass
from typing import AbstractSet, Optional, Protocol, Sequence

from capture_engine.attach import Insn

DIRECTIONS = ("in", "out", "inout")


@dataclass(frozen=True)
class SourceOptions:
    """tcpdump's -Q, -B and --immediate-mode, for a backend (the CLI's; defaults otherwise)."""

    direction: str = "inout"             # in: received only; out: sent only (DIRECTIONS)
    buffer_bytes: Optional[int] = None   # the kernel buffer; None: the backend's own
    immediate: bool = False              # hand packets over at once, not per ring block


class Sink(Protocol):
    """One open pcap file (output.FdSink, backend_libpcap.LibpcapSink): the recorder's
    output, written at its offset and cut back to a record boundary when a limit is hit."""

    path: str

    def open(self, path: str, snaplen: int) -> None: ...

    def offset(self) -> int: ...

    def append(self, data: bytes) -> None: ...

    def flush(self) -> None: ...

    def truncate(self, offset: int) -> None: ...

    def read(self, start: int, end: int) -> bytes: ...

    def close(self) -> None: ...


class PacketRecorder(Protocol):
    """What a backend hands its records to (output.Recorder): it applies the limits."""

    @property
    def done(self) -> bool: ...

    def accept_batch(self, data: bytes, count: Optional[int] = None,
                     interface: Optional[str] = None) -> None:
        """Complete pcap records, `count` of them when known, all from `interface`."""

    def after_direct_batch(self, start: int, count: int) -> None:
        """`count` records were written straight to the sink since offset `start`."""


class CaptureBackend(Protocol):
    """A packet source over the capture's interfaces (libpcap, raw AF_PACKET sockets).

    open() then make_sink() in the session's thread, run() in the dispatch thread until
    stop(), then drain() and close(); attach()/detach() from the session's link checks.
    """

    name: str
    failure: Optional[str]  # why the source stopped by itself, or None
    received: int
    dropped: int

    def open(self, interfaces: Sequence[str], program: Sequence[Insn], snaplen: int,
             optional: AbstractSet[str] = frozenset(),
             userland: Optional[Sequence[Insn]] = None) -> None: ...

    def attach(self, name: str) -> None: ...

    def detach(self, name: str) -> None: ...

    def make_sink(self) -> Sink: ...

    def run(self, recorder: PacketRecorder) -> None: ...

    def drain(self, recorder: PacketRecorder) -> None: ...

    def stop(self) -> None: ...

    def close(self) -> None: ...
