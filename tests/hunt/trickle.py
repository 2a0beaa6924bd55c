"""A storage endpoint on loopback that answers every request, one byte at a time, forever
(bounded by `limit` seconds): the slow front end that a per-read timeout never catches."""
from __future__ import annotations

import socket
import threading
import time
from typing import List

from devtools.azurite import forward


class TrickleServer:
    """Reads each request, then sends a status line and an endless header, a byte every
    `interval` seconds, until `limit` seconds have passed or close() is called."""

    def __init__(self, interval: float = 0.5, limit: float = 240.0) -> None:
        self.interval, self.limit = interval, limit
        self._server = socket.socket()
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(16)
        self._server.settimeout(0.2)
        self.port = self._server.getsockname()[1]
        self._closed = threading.Event()
        self.trickling = True  # False: answer at once (201, empty), as healthy storage does
        self.requests: List[str] = []
        self._threads: List[threading.Thread] = []
        self._accepter = threading.Thread(target=self._accept, daemon=True)
        self._accepter.start()

    def uri(self, container: str, blob: str) -> str:
        return (f"http://127.0.0.1:{self.port}/devstoreaccount1/{container}/{blob}"
                "?sv=2021-08-06&sr=b&sp=rwc&se=2099-01-01T00%3A00%3A00Z&sig=TrickleSig0000")

    def close(self) -> None:
        self._closed.set()
        self._accepter.join(5)
        for thread in self._threads:
            thread.join(5)
        self._server.close()

    def __enter__(self) -> TrickleServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._server.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        started = time.monotonic()
        conn.settimeout(1.0)
        try:
            head = b""
            while b"\r\n\r\n" not in head and time.monotonic() - started < 10:
                try:
                    chunk = conn.recv(65536)
                except socket.timeout:
                    continue
                if not chunk:
                    return
                head += chunk
            self.requests.append(head.split(b"\r\n", 1)[0].decode("latin-1"))
            self._drain_body(conn, head)
            if not self.trickling:
                conn.sendall(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n"
                             b"Connection: close\r\n\r\n")
                return
            answer = b"HTTP/1.1 200 OK\r\nx-ms-pad: "
            while not self._closed.is_set() and time.monotonic() - started < self.limit:
                conn.sendall(answer[:1] if answer else b"a")
                answer = answer[1:]
                self._closed.wait(self.interval)
        except OSError:
            pass
        finally:
            conn.close()

    @staticmethod
    def _drain_body(conn: socket.socket, head: bytes) -> None:
        """Read the request body (Content-Length) so the client is waiting for the answer."""
        headers, _, body = head.partition(b"\r\n\r\n")
        length = 0
        for line in headers.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length" and value.strip().isdigit():
                length = int(value.strip())
        deadline = time.monotonic() + 10
        while len(body) < length and time.monotonic() < deadline:
            try:
                chunk = conn.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                return
            body += chunk


class TrickleSnapshotProxy:
    """Forwards every request to Azurite, except a blob snapshot (comp=snapshot), whose answer
    trickles a byte every `interval` seconds for up to `limit` seconds."""

    def __init__(self, azurite_port: int, interval: float = 0.5, limit: float = 60.0) -> None:
        import http.server

        proxy = self
        self.azurite_port = azurite_port
        self.snapshot_started = threading.Event()
        closed = self._closed = threading.Event()

        class Handler(http.server.BaseHTTPRequestHandler):
            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if "comp=snapshot" in self.path:
                    proxy.snapshot_started.set()
                    started = time.monotonic()
                    answer = b"HTTP/1.1 201 Created\r\nx-ms-pad: "
                    while not closed.is_set() and time.monotonic() - started < limit:
                        self.wfile.write(answer[:1] if answer else b"a")
                        self.wfile.flush()
                        answer = answer[1:]
                        closed.wait(interval)
                    self.close_connection = True
                    return
                forward(self, azurite_port, body)

            do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _any

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def route(self, uri: str) -> str:
        return uri.replace(f"127.0.0.1:{self.azurite_port}", f"127.0.0.1:{self.port}")

    def close(self) -> None:
        self._closed.set()
        self.server.shutdown()
        self.server.server_close()
