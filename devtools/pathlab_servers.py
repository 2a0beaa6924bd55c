"""Lab servers: HTTP(S) (/ 200, /fail 500, /badheaders 150 headers, /caf%C3%A9 200), silent DNS."""
from __future__ import annotations

import socket
import ssl
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path.startswith("/badheaders"):
            self.send_response(200)
            for i in range(150):  # http.client refuses more than 100 header lines
                self.send_header(f"X-Filler-{i}", "x")
            self.end_headers()
            return
        status = 500 if self.path.startswith("/fail") else 200
        if self.path.startswith("/caf"):  # a client must send /café percent-encoded
            status = 200 if self.path == "/caf%C3%A9" else 400
        body = f"status {status}\n".encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def http(address: str, port: int, cert: str = "") -> None:
    server = ThreadingHTTPServer((address, port), Handler)
    if cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    server.serve_forever()


def silent_dns(address: str) -> None:
    """Receives DNS questions and never answers: a resolver timeout, for real."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((address, 53))
    while True:
        sock.recv(4096)


if __name__ == "__main__":
    kind, address = sys.argv[1], sys.argv[2]
    if kind == "http":
        http(address, int(sys.argv[3]), sys.argv[4] if len(sys.argv) > 4 else "")
    else:
        silent_dns(address)
