"""One HTTP(S) probe under one deadline: connect, TLS, request, status line and headers."""
from __future__ import annotations

import http.client
import io
import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional

from connectivity.deadline import Deadline
from connectivity.httpconfig import HttpConfiguration
from connectivity.probe import ProbeResult, abort, errno_name, tcp_connect
from plumbing.crashpoints import crashpoint

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer  # a type-checking-only name: any writable buffer

PHASES = {"tls": "the TLS handshake", "request": "sending the request",
          "response": "the status line and headers"}


@dataclass(frozen=True)
class HttpOutcome:
    connect: ProbeResult
    status: Optional[int] = None
    reason: str = ""
    error: str = ""
    error_kind: str = ""        # "tls", "protocol", "headers", "timeout"
    timings_ms: dict[str, float] = field(default_factory=dict)


def http_probe(addr: str, host: str, port: int, tls: bool, config: HttpConfiguration,
               source_port: Optional[int], deadline: Deadline,
               connect_timeout: float) -> HttpOutcome:
    """Connect (at most `connect_timeout`), then TLS, one request and the response head.

    Every wait is bounded by what is left of `deadline`, so a server trickling bytes cannot
    stretch the probe: a per-read timeout alone restarts with each byte.
    """
    begun = time.monotonic()  # a measured duration (latency), not a limit: real time
    connect, sock = tcp_connect(addr, port, source_port, min(connect_timeout, deadline.left()))
    if sock is None:
        return HttpOutcome(connect)
    exchange = _Exchange(sock, deadline, {"connect": connect.rtt_ms or 0.0})
    try:
        status, reason = exchange.run(host, port, tls, config)
        return HttpOutcome(connect, status, reason, timings_ms=exchange.timings)
    except socket.timeout:
        return HttpOutcome(connect, error=f"{PHASES[exchange.phase]} did not complete within "
                           f"the probe deadline ({deadline.at - begun:.1f} s; "
                           f"{exchange.received} response "
                           "bytes received)", error_kind="timeout", timings_ms=exchange.timings)
    except ssl.SSLError as exc:
        return HttpOutcome(connect, error=f"TLS handshake failed: {exc}", error_kind="tls",
                           timings_ms=exchange.timings)
    except http.client.HTTPException as exc:
        # http.client names the header section in its message when that is what broke
        # (a line over 64 KiB, more than 100 headers); a bad status line is "protocol".
        kind = "headers" if "header" in str(exc).lower() else "protocol"
        return HttpOutcome(connect, error=f"{type(exc).__name__}: {exc}", error_kind=kind,
                           timings_ms=exchange.timings)
    except OSError as exc:
        return HttpOutcome(connect, error=f"{errno_name(exc.errno or 0)}: {exc.strerror}",
                           error_kind="protocol", timings_ms=exchange.timings)
    finally:
        abort(exchange.sock)


def request_head(config: HttpConfiguration, host: str, port: int, tls: bool) -> bytes:
    """The request line and headers; the caller's headers replace our Host/Accept-Encoding."""
    authority = f"[{host}]" if ":" in host else host
    if port != (443 if tls else 80):
        authority += f":{port}"
    given = {name.lower() for name, _ in config.headers}
    lines = [f"{config.method.upper()} {config.path} HTTP/1.1"]
    if "host" not in given:
        lines.append(f"Host: {authority}")
    if "accept-encoding" not in given:
        lines.append("Accept-Encoding: identity")
    # request.py admits only ASCII paths and Latin-1 header values without controls.
    head = "\r\n".join(lines + [f"{name}: {value}" for name, value in config.headers])
    return (head + "\r\n\r\n").encode("latin-1")


class _Exchange:
    """TLS (optional), one request, the response head; `phase`/`received` say how far it got."""

    def __init__(self, sock: socket.socket, deadline: Deadline,
                 timings: dict[str, float]) -> None:
        self.sock = sock
        self.deadline = deadline
        self.timings = timings
        self.phase = "tls"
        self.received = 0
        self.started = time.monotonic()  # measures the TLS phase; the limit is the deadline

    def run(self, host: str, port: int, tls: bool, config: HttpConfiguration) -> tuple[int, str]:
        self.sock.setblocking(True)
        if tls:
            crashpoint("connectivity.check.tls")
            self.sock = _tls_context().wrap_socket(self.sock, server_hostname=host,
                                                   do_handshake_on_connect=False)
            # One call, one overall timeout: CPython's _ssl measures it against a deadline.
            self.sock.settimeout(self.deadline.wait())
            self.sock.do_handshake()
            self.timings["tls"] = (time.monotonic() - self.started) * 1000.0
        crashpoint("connectivity.check.request")
        self.phase = "request"
        sent = time.monotonic()
        self.sock.settimeout(self.deadline.wait())
        self.sock.sendall(request_head(config, host, port, tls))  # sendall: one overall timeout
        crashpoint("connectivity.check.response")
        self.phase = "response"
        # HTTPResponse only calls makefile("rb") on its socket; typeshed asks for a real one.
        response = http.client.HTTPResponse(_ResponseSource(self),  # type: ignore[arg-type]
                                            method=config.method.upper())
        response.begin()
        self.timings["firstByte"] = (time.monotonic() - sent) * 1000.0
        return response.status, response.reason


class _ResponseSource:
    """What http.client reads the response from: each recv waits only for what is left."""

    def __init__(self, exchange: _Exchange) -> None:
        self.exchange = exchange

    def makefile(self, mode: str) -> io.BufferedReader:
        return io.BufferedReader(_DeadlineReader(self.exchange))


class _DeadlineReader(io.RawIOBase):
    def __init__(self, exchange: _Exchange) -> None:
        super().__init__()
        self.exchange = exchange

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        sock = self.exchange.sock
        sock.settimeout(self.exchange.deadline.wait())
        count = sock.recv_into(buffer)
        self.exchange.received += count
        return count


def _tls_context() -> ssl.SSLContext:
    """No certificate checks (reachability, not PKI policy), so no CA store to load."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context
