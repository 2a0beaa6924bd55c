"""A TCP proxy on loopback in front of a storage endpoint that can be told to stall.

Stalled, it accepts connections and forwards nothing in either direction, exactly like a
storage account whose front end hangs: requests are sent and no answer ever comes. Resumed,
bytes flow again (connections held during the stall carry on). For tests of what the handler
does when its status or capture storage hangs.
"""
from __future__ import annotations

import select
import selectors
import socket
import threading
from typing import Dict, Optional
from urllib.parse import urlsplit, urlunsplit

MAX_CONNECTIONS = 256


class StallProxy:
    """Forwards 127.0.0.1:<port> to `target` (host, port) unless stalled."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._server = socket.socket()
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(64)
        self._server.setblocking(False)
        self.port = self._server.getsockname()[1]
        self._stalled = threading.Event()
        self._closed = threading.Event()
        self._peers: Dict[socket.socket, socket.socket] = {}
        self._thread = threading.Thread(target=self._loop, name="stall-proxy", daemon=True)

    def __enter__(self) -> "StallProxy":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stall(self) -> None:
        self._stalled.set()

    def resume(self) -> None:
        self._stalled.clear()

    def rewrite(self, uri: str) -> str:
        """The same URI (path and SAS) addressed through this proxy."""
        parts = urlsplit(uri)
        return urlunsplit((parts.scheme, f"127.0.0.1:{self.port}", parts.path, parts.query,
                           parts.fragment))

    def close(self) -> None:
        self._closed.set()
        if self._thread.is_alive():
            self._thread.join(5)
        for sock in list(self._peers):
            sock.close()
        self._peers.clear()
        self._server.close()

    # -- the forwarding loop ------------------------------------------------------------
    def _loop(self) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self._server, selectors.EVENT_READ)
        try:
            while not self._closed.is_set():
                if self._stalled.is_set():  # accept, hold, forward nothing
                    ready, _, _ = select.select([self._server], [], [], 0.05)
                    if ready:
                        self._accept(selector)
                    continue
                for key, _ in selector.select(timeout=0.05):
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    if sock is self._server:
                        self._accept(selector)
                    else:
                        self._forward(selector, sock)
        finally:
            selector.close()

    def _accept(self, selector: selectors.BaseSelector) -> None:
        try:
            client, _ = self._server.accept()
        except BlockingIOError:
            return
        if len(self._peers) >= 2 * MAX_CONNECTIONS:
            client.close()
            return
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        for one, other in ((client, upstream), (upstream, client)):
            one.setblocking(False)
            self._peers[one] = other
            selector.register(one, selectors.EVENT_READ)

    def _forward(self, selector: selectors.BaseSelector, sock: socket.socket) -> None:
        other: Optional[socket.socket] = self._peers.get(sock)
        try:
            data = sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if data and other is not None:
            try:
                other.setblocking(True)
                other.settimeout(5)
                other.sendall(data)
                other.setblocking(False)
                return
            except OSError:
                pass
        for one in (sock, other):
            if one is not None and one in self._peers:
                selector.unregister(one)
                self._peers.pop(one, None)
                one.close()
