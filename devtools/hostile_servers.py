"""Hostile lab servers (HTTP, TLS, DNS) that trickle, stall or send garbage; every wait bounded.

Run inside the lab's server namespace: `python hostile_servers.py HTTP_ADDRESS CERT`. The DNS
addresses below must already be assigned there. Standard library only (it runs as a script).
"""
from __future__ import annotations

import os
import socket
import ssl
import struct
import sys
import threading
import time
from typing import Callable, Iterator

TRICKLE = 0.25        # seconds between bytes: far below any per-read timeout of a client
MAX_BYTES = 1200      # a trickle stops after this many bytes (5 minutes at TRICKLE)
HOLD = 300.0          # a stalled connection is dropped after this long
LIFETIME = 1800.0     # the whole process exits after this long, even if nobody stops it

# HTTP(S) listeners on the lab server's address.
STATUS_TRICKLE, HEADER_TRICKLE, SILENT = 8081, 8082, 8083
TLS_HANDSHAKE_TRICKLE, TLS_STATUS_TRICKLE = 8443, 8444
HTTP_PORTS = (STATUS_TRICKLE, HEADER_TRICKLE, SILENT, TLS_HANDSHAKE_TRICKLE, TLS_STATUS_TRICKLE)

# DNS servers, one address each (UDP and TCP port 53).
BIG_DNS = "10.199.2.54"                                      # UDP says TC=1; TCP answers fully
TRICKLE_DNS = ("10.199.2.55", "10.199.2.56", "10.199.2.57")  # UDP TC=1; TCP trickles
GARBAGE_DNS = "10.199.2.58"                                  # UDP: right id, garbage after it
SLOW_DNS = "10.199.2.59"                                     # UDP: the answer, 5 s late
DNS_ADDRESSES = (BIG_DNS, *TRICKLE_DNS, GARBAGE_DNS, SLOW_DNS)
SLOW_DELAY = 5.0
BIG_NAME = "big.cc.test"
BIG_COUNT = 500
FIRST_ADDRESS = "10.199.2.2"   # the lab's HTTP server: a check of BIG_NAME reaches it


def big_addresses() -> list[str]:
    """FIRST_ADDRESS, then addresses in 10.199.100.0/22 that nobody holds (just data)."""
    return [FIRST_ADDRESS] + [f"10.199.{100 + i // 250}.{1 + i % 250}"
                              for i in range(BIG_COUNT - 1)]


def _serve_tcp(address: str, port: int, handle: Callable[[socket.socket], None]) -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((address, port))
    listener.listen(64)
    while True:
        conn, _ = listener.accept()
        conn.settimeout(HOLD)
        threading.Thread(target=_guarded, args=(handle, conn), daemon=True).start()


def _guarded(handle: Callable[[socket.socket], None], conn: socket.socket) -> None:
    try:
        handle(conn)
    except (OSError, ssl.SSLError):
        pass  # the client reset the connection: exactly what a bounded client does
    finally:
        conn.close()


def _trickle(conn: socket.socket, data: Iterator[int]) -> None:
    for count, byte in enumerate(data):
        if count >= MAX_BYTES:
            return
        conn.sendall(bytes([byte]))
        time.sleep(TRICKLE)


def _forever(prefix: bytes, filler: bytes) -> Iterator[int]:
    yield from prefix
    while True:
        yield from filler


def _read_head(conn: socket.socket) -> None:
    data = b""
    while b"\r\n\r\n" not in data and len(data) < 65536:
        chunk = conn.recv(4096)
        if not chunk:
            return
        data += chunk


def status_trickle(conn: socket.socket) -> None:
    """A status line that never ends, one byte at a time."""
    _read_head(conn)
    _trickle(conn, _forever(b"HTTP/1.1 200 OK", b"K"))


def header_trickle(conn: socket.socket) -> None:
    """A prompt status line, then header lines one byte at a time, never the blank line."""
    _read_head(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\n")
    _trickle(conn, _forever(b"", b"X-Trickle: 1\r\n"))


def silent(conn: socket.socket) -> None:
    """Accepts, reads the request, never answers; holds until the client goes."""
    _read_head(conn)
    deadline = time.monotonic() + HOLD
    while time.monotonic() < deadline and conn.recv(4096):
        pass


def tls_handshake_trickle(conn: socket.socket) -> None:
    """Reads the ClientHello, then a 16 KiB handshake record one byte at a time."""
    conn.recv(4096)
    _trickle(conn, _forever(b"\x16\x03\x03\x40\x00", b"\x02"))


def tls_status_trickle(cert: str) -> Callable[[socket.socket], None]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert)

    def handle(conn: socket.socket) -> None:
        conn.settimeout(10.0)
        secure = context.wrap_socket(conn, server_side=True)
        secure.settimeout(HOLD)
        status_trickle(secure)
    return handle


# DNS (RFC 1035): just enough to answer A/AAAA questions.
def _question(query: bytes) -> tuple[int, bytes, int, str]:
    qid = struct.unpack("!H", query[:2])[0]
    offset, labels = 12, []
    while query[offset]:
        labels.append(query[offset + 1:offset + 1 + query[offset]].decode("ascii", "replace"))
        offset += 1 + query[offset]
    end = offset + 5
    qtype = struct.unpack("!H", query[offset + 1:offset + 3])[0]
    return qid, query[12:end], qtype, ".".join(labels).lower()


def dns_reply(query: bytes, truncated: bool = False) -> bytes:
    """The answer for BIG_NAME: BIG_COUNT A records (none when `truncated`), else NXDOMAIN."""
    _, _, qtype, name = _question(query)
    if name != BIG_NAME:
        return _reply(query, [], rcode=3)
    return _reply(query, big_addresses() if qtype == 1 and not truncated else [], truncated)


def _reply(query: bytes, addresses: list[str], truncated: bool = False, rcode: int = 0) -> bytes:
    qid, question, _, _ = _question(query)
    flags = 0x8580 | (0x0200 if truncated else 0) | rcode   # QR, AA, RD, RA (+TC)
    answers = [struct.pack("!HHHIH", 0xC00C, 1, 1, 60, 4) + socket.inet_aton(a)
               for a in addresses]
    return struct.pack("!HHHHHH", qid, flags, 1, len(answers), 0, 0) + question + \
        b"".join(answers)


def _recv_exact(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def _tcp_query(conn: socket.socket) -> bytes:
    size = struct.unpack("!H", _recv_exact(conn, 2))[0]
    return _recv_exact(conn, size)


def dns_tcp_full(conn: socket.socket) -> None:
    reply = dns_reply(_tcp_query(conn))
    conn.sendall(struct.pack("!H", len(reply)) + reply)


def dns_tcp_trickle(conn: socket.socket) -> None:
    reply = dns_reply(_tcp_query(conn))
    _trickle(conn, iter(struct.pack("!H", len(reply)) + reply))


def _serve_udp(address: str, answer: Callable[[socket.socket, bytes, tuple], None]) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((address, 53))
    while True:
        query, peer = sock.recvfrom(4096)
        if len(query) >= 17:
            answer(sock, query, peer)


def udp_truncated(sock: socket.socket, query: bytes, peer: tuple) -> None:
    sock.sendto(dns_reply(query, truncated=True), peer)


def udp_garbage(sock: socket.socket, query: bytes, peer: tuple) -> None:
    """The question's id, a NOERROR response header with no question echoed, then junk."""
    sock.sendto(query[:2] + struct.pack("!HHHHH", 0x8180, 0, 0, 0, 0) + b"\xde\xad\xbe\xef" * 8,
                peer)


def udp_slow(sock: socket.socket, query: bytes, peer: tuple) -> None:
    """One A record for any name, SLOW_DELAY seconds late: later than any resolver waits."""
    reply = _reply(query, [FIRST_ADDRESS] if _question(query)[2] == 1 else [])
    timer = threading.Timer(SLOW_DELAY, sock.sendto, (reply, peer))
    timer.daemon = True
    timer.start()


def main(http_address: str, cert: str) -> None:
    handlers: list[tuple[Callable[..., None], tuple]] = [
        (_serve_tcp, (http_address, STATUS_TRICKLE, status_trickle)),
        (_serve_tcp, (http_address, HEADER_TRICKLE, header_trickle)),
        (_serve_tcp, (http_address, SILENT, silent)),
        (_serve_tcp, (http_address, TLS_HANDSHAKE_TRICKLE, tls_handshake_trickle)),
        (_serve_tcp, (http_address, TLS_STATUS_TRICKLE, tls_status_trickle(cert))),
        (_serve_udp, (BIG_DNS, udp_truncated)), (_serve_tcp, (BIG_DNS, 53, dns_tcp_full)),
        (_serve_udp, (GARBAGE_DNS, udp_garbage)), (_serve_udp, (SLOW_DNS, udp_slow))]
    for address in TRICKLE_DNS:
        handlers += [(_serve_udp, (address, udp_truncated)),
                     (_serve_tcp, (address, 53, dns_tcp_trickle))]
    for target, args in handlers:
        threading.Thread(target=target, args=args, daemon=True).start()
    time.sleep(LIFETIME)
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
