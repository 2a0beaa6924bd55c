"""Fixtures for snapshot tests: loop-mounted ext4/xfs, page blobs in Azurite, configs, scripts."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from devtools.azurite import forward
from devtools.backupsettings import b64, make_disks, settings_dicts  # noqa: F401 - re-exported
from devtools.loopfs import LoopFilesystems
from devtools.writer import Writer


@pytest.fixture
def loopfs(tmp_path: Path):
    """Factory making small loop-mounted filesystems; all thawed, unmounted, detached after."""
    with LoopFilesystems(tmp_path) as filesystems:
        yield filesystems.make


@pytest.fixture
def confdir(tmp_path: Path) -> Path:
    path = tmp_path / "etc-azure"
    path.mkdir(mode=0o700)
    return path


def write_vmbackup_conf(confdir: Path, mounts, timeout: float = 30, fsfreeze: bool = True,
                        extra: str = "") -> Path:
    """A vmbackup.conf whose MountsToFreeze names exactly the test's loop mounts."""
    conf = confdir / "vmbackup.conf"
    conf.write_text(f"[SnapshotThread]\nfsfreeze = {fsfreeze}\ntimeout = {timeout}\n"
                    f"MountsToFreeze = {','.join(mounts)}\n{extra}")
    return conf


def write_script(path: Path, body: str, mode: int = 0o700) -> Path:
    path.write_text("#!/bin/sh\n" + body + "\n")
    os.chmod(path, mode)
    return path


def write_plugin_config(confdir: Path, mode: int = 0o600, **values) -> Path:
    path = confdir / "VMSnapshotScriptPluginConfig.json"
    config = {"pluginName": "ScriptRunner", "timeoutInSeconds": 10,
              "continueBackupOnFailure": True, "fsFreezeEnabled": True}
    config.update(values)
    path.write_text(json.dumps(config))
    os.chmod(path, mode)
    return path


@pytest.fixture
def writer_factory():
    writers = []

    def make(path: str) -> Writer:
        writers.append(Writer(path))
        return writers[-1]

    yield make
    for writer in writers:
        writer.stop()


def wait_for(predicate, timeout: float = 10.0, step: float = 0.02) -> bool:
    """Poll `predicate` until true or `timeout` (a bound on waiting, not a timing assertion)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


class HangingSnapshotProxy:
    """Forwards to Azurite, but never answers a snapshot request (comp=snapshot), or answers
    it with `answer` = (status, x-ms-error-code): answers Azurite itself never gives. With
    `hold = False` snapshot requests are forwarded too (after `delay` s); their headers land
    in `snapshots`."""

    def __init__(self, azurite, answer=None) -> None:
        import http.server
        import threading

        target_port = azurite.port
        proxy = self
        self.answer = answer
        self.hold = True
        self.delay = 0.0  # seconds a forwarded snapshot request waits first
        self.snapshots: list = []
        self.held = threading.Event()
        release = self.release = threading.Event()
        held = self.held

        class Handler(http.server.BaseHTTPRequestHandler):
            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if "comp=snapshot" in self.path and proxy.answer is not None:
                    status, code = proxy.answer
                    body = (f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code>'
                            f'<Message>{code}</Message></Error>').encode()
                    self.send_response(status)
                    self.send_header("x-ms-error-code", code)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                if "comp=snapshot" in self.path:
                    proxy.snapshots.append({k.lower(): v for k, v in self.headers.items()})
                    release.wait(proxy.delay)
                if "comp=snapshot" in self.path and proxy.hold:
                    held.set()
                    release.wait(30)
                    return
                forward(self, target_port, body)

            do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _any

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._azurite_port = target_port
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def route(self, uri: str) -> str:
        return uri.replace(f"127.0.0.1:{self._azurite_port}", f"127.0.0.1:{self.port}")

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hanging_proxy(azurite):
    proxy = HangingSnapshotProxy(azurite)
    yield proxy
    proxy.close()


def account_sas_container_uri(azurite, container: str) -> str:
    """A container URL carrying an account SAS: Azurite refuses snapshot reads under a
    container service SAS, which Azure storage allows; the account SAS works on both."""
    from datetime import datetime, timedelta, timezone

    from azure.storage.blob import AccountSasPermissions, ResourceTypes, generate_account_sas

    from devtools.azurite import ACCOUNT, ACCOUNT_KEY

    azurite.create_container(container)
    token = generate_account_sas(
        ACCOUNT, ACCOUNT_KEY, ResourceTypes(container=True, object=True),
        AccountSasPermissions(read=True, list=True, write=True, create=True, add=True),
        datetime.now(timezone.utc) + timedelta(hours=2))
    return f"{azurite.account_url}/{container}?{token}"
