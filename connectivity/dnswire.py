"""DNS messages (RFC 1035): build a question; read a reply strictly, naming what is malformed."""
from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}
QTYPES = {"A": 1, "AAAA": 28}
QR, OPCODE, TC = 0x8000, 0x7800, 0x0200
MAX_POINTERS = 32   # compression pointers followed in one name: a loop is malformed


class MalformedReply(ValueError):
    """The reply carries our id but is not a well-formed answer to our question."""


@dataclass(frozen=True)
class Reply:
    rcode: int
    truncated: bool
    answers: tuple[str, ...]


def build_query(qid: int, name: str, qtype: int) -> bytes:
    header = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)  # recursion desired
    labels = b"".join(bytes([len(p)]) + p.encode("idna") for p in name.rstrip(".").split("."))
    return header + labels + b"\x00" + struct.pack("!HH", qtype, 1)


def parse_reply(reply: bytes, name: str, qtype: int) -> Reply:
    """RCODE, TC and the addresses of the wanted type in the answer section (CNAMEs followed).

    Raises MalformedReply: not a response, a question that is not ours, a record running past
    the end. A truncated (TC) reply may end anywhere: what was read so far is returned.
    """
    if len(reply) < 12:
        raise MalformedReply(f"{len(reply)} bytes, shorter than a DNS header")
    _, flags, qdcount, ancount = struct.unpack("!HHHH", reply[:8])
    rcode, truncated = flags & 0x000F, bool(flags & TC)
    if not flags & QR or flags & OPCODE:
        raise MalformedReply("not a standard query response (QR clear or opcode set)")
    if qdcount == 0 and rcode != 0:
        return Reply(rcode, truncated, ())  # some servers drop the question from an error
    if qdcount != 1:
        raise MalformedReply(f"{qdcount} questions in the reply, expected ours alone")
    try:
        offset, asked = read_name(reply, 12)
        got_type, got_class = struct.unpack("!HH", reply[offset:offset + 4])
    except (IndexError, struct.error) as exc:
        raise MalformedReply("the question section ends early") from exc
    if asked.lower() != name.rstrip(".").lower() or (got_type, got_class) != (qtype, 1):
        raise MalformedReply(f"the reply answers another question ({asked!r} type {got_type})")
    found: list[str] = []
    offset += 4
    for _ in range(ancount):
        try:
            offset, address = _record(reply, offset, qtype)
        except (IndexError, struct.error, MalformedReply) as exc:
            if truncated:
                break
            raise MalformedReply(f"an answer record runs past the end ({exc or 'short'})") \
                from exc
        if address:
            found.append(address)
    return Reply(rcode, truncated, tuple(found))


def _record(reply: bytes, offset: int, qtype: int) -> tuple[int, str]:
    offset = skip_name(reply, offset)
    rtype, _cls, _ttl, length = struct.unpack("!HHIH", reply[offset:offset + 10])
    end = offset + 10 + length
    if end > len(reply):
        raise MalformedReply(f"record data of {length} bytes past the end")
    data = reply[offset + 10:end]
    if rtype == qtype == 1 and length == 4:
        return end, socket.inet_ntop(socket.AF_INET, data)
    if rtype == qtype == 28 and length == 16:
        return end, socket.inet_ntop(socket.AF_INET6, data)
    return end, ""


def read_name(data: bytes, offset: int) -> tuple[int, str]:
    """The dotted name at offset (pointers followed) and the offset just after it."""
    labels: list[str] = []
    end, pointers = None, 0
    while True:   # each label moves forward; only pointers move back, and they are counted
        length = data[offset]
        if length & 0xC0 == 0xC0:
            pointers += 1
            if pointers > MAX_POINTERS:
                raise MalformedReply("a name of too many compression pointers (a loop?)")
            end = offset + 2 if end is None else end
            offset = struct.unpack("!H", data[offset:offset + 2])[0] & 0x3FFF
            continue
        if length & 0xC0:
            raise MalformedReply(f"reserved label type 0x{length:02x}")
        if length == 0:
            return (offset + 1 if end is None else end), ".".join(labels)
        labels.append(data[offset + 1:offset + 1 + length].decode("ascii", "replace"))
        offset += 1 + length


def skip_name(data: bytes, offset: int) -> int:
    while True:
        length = data[offset]
        if length == 0:
            return offset + 1
        if length & 0xC0 == 0xC0:
            return offset + 2
        if length & 0xC0:
            raise MalformedReply(f"reserved label type 0x{length:02x}")
        offset += 1 + length
