"""An HTTP proxy on loopback in front of Azurite that holds chosen requests for a while before
forwarding them: slow storage for one kind of request, to order a race deterministically."""
from __future__ import annotations

import http.server
import threading
from typing import Callable, List, Optional

from devtools.azurite import forward


class DelayProxy:
    """`rule(method, path, body)` returns the seconds to hold a request (0: at once)."""

    def __init__(self, azurite_port: int) -> None:
        proxy = self
        self.azurite_port = azurite_port
        self.rule: Callable[[str, str, bytes], float] = lambda method, path, body: 0.0
        self.log: List[str] = []
        self._closed = threading.Event()

        class Handler(http.server.BaseHTTPRequestHandler):
            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                hold = proxy.rule(self.command, self.path, body)
                proxy.log.append(f"{self.command} {self.path.split('?')[0]} hold={hold:g}")
                if hold:
                    proxy._closed.wait(hold)
                self._forward(body)

            def _forward(self, body: bytes) -> None:
                forward(self, azurite_port, body)

            do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _any

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread: Optional[threading.Thread] = threading.Thread(
            target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def route(self, uri: str) -> str:
        return uri.replace(f"127.0.0.1:{self.azurite_port}", f"127.0.0.1:{self.port}")

    def close(self) -> None:
        self._closed.set()
        self.server.shutdown()
        self.server.server_close()
