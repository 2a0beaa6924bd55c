"""Hunt: a protectedSettings envelope whose OBJECT IDENTIFIER is long takes quadratic time to
decode (`value << 7` on an ever-growing integer per byte): 300 KB of envelope, well within what
a settings file carries, keeps enable busy for seconds, under the state lock."""
from __future__ import annotations

import base64
import time

from handler.errors import HandlerError
from handler.protected import decrypt_protected_settings


def tlv(tag: int, value: bytes) -> bytes:
    size = len(value)
    if size < 0x80:
        return bytes([tag, size]) + value
    raw = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(raw)]) + raw + value


def test_a_long_oid_in_the_envelope_is_refused_within_a_second(tmp_path):
    oid = tlv(0x06, b"\x2a" + b"\xff" * 300_000 + b"\x01")  # one arc of 2.1 million bits
    envelope = base64.b64encode(tlv(0x30, oid + tlv(0xA0, b""))).decode()
    started = time.monotonic()
    try:
        decrypt_protected_settings(envelope, "AB" * 20, tmp_path)
        outcome = None
    except HandlerError as exc:
        outcome = exc
    elapsed = time.monotonic() - started
    assert outcome is not None and outcome.code != HandlerError.code, outcome
    assert elapsed < 1.0, f"a malformed envelope took {elapsed:.1f}s to refuse ({outcome})"
