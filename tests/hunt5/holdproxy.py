"""A TCP proxy on loopback in front of storage that can hold back one block-list commit and
deliver it later, after the client gave up on it: a request storage executes late, as a
slow front end or a network that delays one connection does."""
from __future__ import annotations

import socket
import threading
from typing import List, Optional
from urllib.parse import urlsplit, urlunsplit


class HoldProxy:
    """Forwards to `port` on 127.0.0.1; hold_next_commit() keeps the next request carrying
    `comp=blocklist` from storage until release()."""

    def __init__(self, port: int) -> None:
        self.target = ("127.0.0.1", port)
        self._server = socket.socket()
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(32)
        self._server.settimeout(0.2)
        self.port = self._server.getsockname()[1]
        self._closed = threading.Event()
        self._armed = threading.Event()
        self.held = threading.Event()     # a commit is being held
        self._release = threading.Event()
        self.delivered = threading.Event()  # the held commit reached storage
        self.refuse_commits = False  # answer every commit 500 (storage that takes blocks only)
        self.refused = 0
        self._threads: List[threading.Thread] = []
        self._start(self._accept)

    def rewrite(self, uri: str) -> str:
        parts = urlsplit(uri)
        return urlunsplit((parts.scheme, f"127.0.0.1:{self.port}", parts.path, parts.query, ""))

    def hold_next_commit(self) -> None:
        self._armed.set()

    def release(self) -> None:
        self._release.set()

    def close(self) -> None:
        self._closed.set()
        self._release.set()
        for thread in self._threads:
            thread.join(5)
        self._server.close()

    def _start(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._server.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            upstream = socket.create_connection(self.target, timeout=5)
            for sock in (client, upstream):
                sock.settimeout(0.2)
            self._start(self._pipe, client, upstream, True)
            self._start(self._pipe, upstream, client, False)

    def _pipe(self, source: socket.socket, sink: socket.socket, requests: bool) -> None:
        held: Optional[bytearray] = None
        try:
            while not self._closed.is_set():
                try:
                    data = source.recv(65536)
                except socket.timeout:
                    data = None
                except OSError:
                    data = b""
                commit = bool(data) and b"comp=blocklist" in data.split(b"\r\n", 1)[0]
                if commit and requests and self.refuse_commits:
                    source.sendall(b"HTTP/1.1 500 Internal Server Error\r\n"
                                   b"Content-Length: 0\r\nConnection: close\r\n\r\n")
                    self.refused += 1
                    return
                if commit and requests and held is None and self._armed.is_set():
                    self._armed.clear()
                    held = bytearray()
                    self.held.set()
                if held is not None:
                    if data:
                        held += data
                    if data == b"" or self._release.is_set():
                        self._release.wait(60)  # the client is gone: deliver it late anyway
                        sink.sendall(bytes(held))
                        self.delivered.set()
                        self._drain(sink)
                        return
                    continue
                if data == b"":
                    return
                if data:
                    sink.sendall(data)
        finally:
            for sock in (source, sink):
                try:
                    sock.close()
                except OSError:
                    pass

    @staticmethod
    def _drain(sock: socket.socket) -> None:
        """Wait for storage's answer to the late request (nobody reads it)."""
        sock.settimeout(5)
        try:
            sock.recv(65536)
        except OSError:
            pass
