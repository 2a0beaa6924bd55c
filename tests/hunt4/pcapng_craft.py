"""Hand-built pcapng inputs (either byte order, several sections, any interface names)."""
from __future__ import annotations

import struct
from typing import List, Sequence

from tests.capture_engine import craft

FRAME = craft.ipv4("10.199.0.1", "10.199.0.2", craft.UDP, 1000, 53)


def section(order: str) -> bytes:
    return struct.pack(order + "IIIHHqI", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1, 28)


def interface(order: str, name: str = "") -> bytes:
    options = b""
    if name:
        raw = name.encode()
        options = struct.pack(order + "HH", 2, len(raw)) + raw + bytes(-len(raw) % 4) + \
            struct.pack(order + "HH", 0, 0)
    length = 20 + len(options)
    return struct.pack(order + "IIHHI", 1, length, 1, 0, 0) + options + \
        struct.pack(order + "I", length)


def packet(order: str, iface: int, second: int, frame: bytes = FRAME) -> bytes:
    pad = -len(frame) % 4
    total = 32 + len(frame) + pad
    return struct.pack(order + "7I", 6, total, iface, 0, second * 1_000_000, len(frame),
                       len(frame)) + frame + bytes(pad) + struct.pack(order + "I", total)


def sections(order: str, names_per_section: Sequence[Sequence[str]]) -> bytes:
    """Each section: its interfaces, then one packet on each (stamped 1, 2, 3... seconds)."""
    out: List[bytes] = []
    second = 0
    for names in names_per_section:
        out.append(section(order))
        out.extend(interface(order, name) for name in names)
        for n in range(len(names)):
            second += 1
            out.append(packet(order, n, second))
    return b"".join(out)
