"""DNS replies read strictly: what is malformed is named, a truncated tail is tolerated."""
from __future__ import annotations

import struct

import pytest

from connectivity.dnswire import MalformedReply, build_query, parse_reply

NAME = "web.cc.test"


def reply(flags: int = 0x8180, answers: int = 1, records: bytes = b"") -> bytes:
    question = build_query(7, NAME, 1)[12:]
    record = struct.pack("!HHHIH", 0xC00C, 1, 1, 60, 4) + bytes([10, 199, 2, 2])
    return struct.pack("!HHHHHH", 7, flags, 1, answers, 0, 0) + question + \
        (records or record * answers)


def test_a_good_reply_gives_its_addresses():
    assert parse_reply(reply(answers=2), NAME, 1).answers == ("10.199.2.2", "10.199.2.2")


@pytest.mark.parametrize("data, why", [
    (b"\x00\x07\x81", "shorter than a DNS header"),
    (reply(flags=0x0180), "not a standard query response"),
    (reply()[:12] + build_query(7, "other.cc.test", 1)[12:], "another question"),
    (reply(answers=3)[:-5], "runs past the end"),
    (reply(records=b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 400)), "past the end"),
    (struct.pack("!HHHHHH", 7, 0x8180, 1, 0, 0, 0) + b"\xc0\x0c", "compression pointers"),
    (struct.pack("!HHHHHH", 7, 0x8180, 2, 0, 0, 0), "2 questions"),
], ids=["short", "not-a-response", "other-question", "cut-record", "long-rdata",
        "pointer-loop", "two-questions"])
def test_malformed_replies_say_why(data, why):
    with pytest.raises(MalformedReply) as caught:
        parse_reply(data, NAME, 1)
    assert why in str(caught.value), str(caught.value)


def test_a_truncated_reply_may_end_mid_record():
    got = parse_reply(reply(flags=0x8380, answers=3)[:-5], NAME, 1)
    assert (got.truncated, got.answers) == (True, ("10.199.2.2", "10.199.2.2")), got
