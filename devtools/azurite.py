"""Start Azurite's blob service on 127.0.0.1 and hand out real SAS URIs for it."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Callable, Optional

if TYPE_CHECKING:
    import http.server

# Azurite's well-known development account (public, documented by Microsoft).
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
               "KBHBeksoGMGw==")


class AzuriteError(RuntimeError):
    """Azurite is not installed or did not come up."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def find_binary() -> str:
    found = shutil.which("azurite-blob")
    if not found:
        raise AzuriteError("azurite-blob not found: install it with `npm install -g azurite@3`")
    return found


class Azurite:
    """A running Azurite blob service with its data in a temporary folder."""

    def __init__(self, location: Optional[str] = None, port: Optional[int] = None) -> None:
        self.location = location or tempfile.mkdtemp(prefix="azurite-")
        self.port = port or free_port()
        self._proc: Optional[subprocess.Popen] = None

    @property
    def account_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/{ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
                f"BlobEndpoint={self.account_url};")

    def start(self, timeout: float = 30.0) -> "Azurite":
        argv = [find_binary(), "--blobHost", "127.0.0.1", "--blobPort", str(self.port),
                "--location", self.location, "--silent", "--skipApiVersionCheck", "--loose"]
        self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise AzuriteError(f"azurite-blob exited with {self._proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise AzuriteError(f"azurite-blob did not listen on port {self.port} in {timeout}s")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            os.killpg(self._proc.pid, 15)
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self._proc.pid, 9)
                self._proc.wait()
        self._proc = None

    def __enter__(self) -> "Azurite":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- SAS helpers ------------------------------------------------------------------
    def service(self):
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient.from_connection_string(self.connection_string)

    def create_container(self, name: str) -> None:
        from azure.core.exceptions import ResourceExistsError

        try:
            self.service().create_container(name)
        except ResourceExistsError:
            pass

    def blob_sas_uri(self, container: str, blob: str, permission: str = "racwd",
                     expires_in: timedelta = timedelta(hours=2)) -> str:
        """A SAS URI for one blob, as the backup service or a user would hand it over."""
        from azure.storage.blob import BlobSasPermissions, generate_blob_sas

        self.create_container(container)
        start = datetime.now(timezone.utc) - timedelta(minutes=5)
        token = generate_blob_sas(ACCOUNT, container, blob, account_key=ACCOUNT_KEY,
                                  permission=BlobSasPermissions.from_string(permission),
                                  expiry=start + timedelta(minutes=5) + expires_in, start=start)
        return f"{self.account_url}/{container}/{blob}?{token}"

    def container_sas_uri(self, container: str, permission: str = "racwdl",
                          expires_in: timedelta = timedelta(hours=2)) -> str:
        from azure.storage.blob import ContainerSasPermissions, generate_container_sas

        self.create_container(container)
        start = datetime.now(timezone.utc) - timedelta(minutes=5)
        token = generate_container_sas(ACCOUNT, container, account_key=ACCOUNT_KEY,
                                       permission=ContainerSasPermissions.from_string(permission),
                                       expiry=start + timedelta(minutes=5) + expires_in,
                                       start=start)
        return f"{self.account_url}/{container}?{token}"

    def expired_blob_sas_uri(self, container: str, blob: str) -> str:
        from azure.storage.blob import BlobSasPermissions, generate_blob_sas

        self.create_container(container)
        now = datetime.now(timezone.utc)
        token = generate_blob_sas(ACCOUNT, container, blob, account_key=ACCOUNT_KEY,
                                  permission=BlobSasPermissions(read=True, write=True,
                                                                create=True),
                                  start=now - timedelta(hours=2), expiry=now - timedelta(hours=1))
        return f"{self.account_url}/{container}/{blob}?{token}"

    def read_blob(self, container: str, blob: str) -> bytes:
        return self.service().get_blob_client(container, blob).download_blob().readall()


def forward(handler: "http.server.BaseHTTPRequestHandler", port: int,
            body: Optional[bytes],
            header: Optional[Callable[[str, str], str]] = None) -> None:
    """Send the request `handler` is serving on to the emulator on 127.0.0.1:`port` and write
    its answer back (test proxies that hold, trickle or fail some requests forward the rest).
    `header(name, value)`, if given, returns the value to send for each answer header."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {k: v for k, v in handler.headers.items() if k.lower() != "host"}
    headers["Host"] = f"127.0.0.1:{port}"
    conn.request(handler.command, handler.path, body=body or None, headers=headers)
    reply = conn.getresponse()
    data = reply.read()
    handler.send_response(reply.status)
    for key, value in reply.getheaders():
        if key.lower() not in ("transfer-encoding", "connection", "content-length"):
            handler.send_header(key, header(key, value) if header else value)
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)
