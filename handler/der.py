"""A minimal DER/BER reader: just enough ASN.1 to walk a CMS EnvelopedData."""
from __future__ import annotations

from dataclasses import dataclass


class DerError(ValueError):
    """The bytes are not well-formed DER (truncated, bad length, wrong tag)."""


# A CMS envelope nests about eight levels deep; anything far deeper is malformed or hostile,
# and must end as a DerError, never as a RecursionError.
MAX_DEPTH = 32
MAX_OID_BYTES = 64


@dataclass(frozen=True)
class Node:
    """One TLV: its tag byte, its value bytes and, for constructed nodes, its children."""

    tag: int
    value: bytes
    depth: int = 0

    @property
    def constructed(self) -> bool:
        return bool(self.tag & 0x20)

    def children(self) -> list["Node"]:
        if not self.constructed:
            raise DerError(f"tag 0x{self.tag:02x} is not constructed")
        return read_all(self.value, self.depth + 1)

    def octets(self) -> bytes:
        """The content of an OCTET STRING, primitive or constructed (BER segments)."""
        if not self.constructed:
            return self.value
        return b"".join(child.octets() for child in self.children())


def read_one(data: bytes, offset: int = 0, depth: int = 0) -> tuple[Node, int]:
    """Read the TLV at offset; return it and the offset just past it."""
    if depth > MAX_DEPTH:
        raise DerError(f"nested more than {MAX_DEPTH} levels deep")
    if offset + 2 > len(data):
        raise DerError("truncated: no room for a tag and a length")
    tag = data[offset]
    if tag & 0x1F == 0x1F:
        raise DerError("multi-byte tags are not used in CMS envelopes")
    first = data[offset + 1]
    pos = offset + 2
    if first == 0x80:  # BER indefinite length: children until end-of-contents
        return _read_indefinite(data, tag, pos, depth)
    if first & 0x80:
        count = first & 0x7F
        if count > 4 or pos + count > len(data):
            raise DerError("truncated or oversized length field")
        length = int.from_bytes(data[pos:pos + count], "big")
        pos += count
    else:
        length = first
    end = pos + length
    if end > len(data):
        raise DerError(f"truncated: value needs {length} bytes, {len(data) - pos} left")
    return Node(tag, data[pos:end], depth), end


def _read_indefinite(data: bytes, tag: int, pos: int, depth: int) -> tuple[Node, int]:
    if not tag & 0x20:
        raise DerError("indefinite length on a primitive value")
    start = pos
    while True:
        if data[pos:pos + 2] == b"\x00\x00":
            return Node(tag, data[start:pos], depth), pos + 2
        _, pos = read_one(data, pos, depth + 1)


def read_all(data: bytes, depth: int = 0) -> list[Node]:
    nodes, offset = [], 0
    while offset < len(data):
        if data[offset:offset + 2] == b"\x00\x00":  # trailing end-of-contents inside BER
            offset += 2
            continue
        node, offset = read_one(data, offset, depth)
        nodes.append(node)
    return nodes


def decode_oid(node: Node) -> str:
    if node.tag != 0x06 or not node.value:
        raise DerError(f"expected an OBJECT IDENTIFIER, found tag 0x{node.tag:02x}")
    if len(node.value) > MAX_OID_BYTES:  # the ones CMS uses are about ten bytes
        raise DerError(f"an OBJECT IDENTIFIER of {len(node.value)} bytes")
    raw = node.value
    parts = [min(raw[0] // 40, 2), raw[0] - 40 * min(raw[0] // 40, 2)]
    value = 0
    for byte in raw[1:]:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(value)
            value = 0
    return ".".join(str(p) for p in parts)


def decode_int(node: Node) -> int:
    if node.tag != 0x02:
        raise DerError(f"expected an INTEGER, found tag 0x{node.tag:02x}")
    return int.from_bytes(node.value, "big", signed=True)


def expect(node: Node, tag: int, what: str) -> Node:
    if node.tag != tag:
        raise DerError(f"{what}: expected tag 0x{tag:02x}, found 0x{node.tag:02x}")
    return node
