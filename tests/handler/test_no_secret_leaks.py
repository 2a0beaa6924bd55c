"""Nothing the handler writes (logs, status, state, events, blobs) holds a secret."""
from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.handler.test_lifecycle import check_settings

pytestmark = pytest.mark.root

PASSWORD = "Pr0tectedPassw0rdValue"
TOKEN = "opaque-protected-token-4242"


def signatures(*uris: str) -> list:
    return [uri.split("sig=", 1)[1].split("&", 1)[0] for uri in uris]


def scan(root: Path, needles: list) -> list:
    hits = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            hits += [f"{path}: {n}" for n in needles if n.encode() in data]
    return hits


def test_no_secret_reaches_any_file_or_blob(agent, ext_dir, azurite, tmp_path):
    status_uri = azurite.blob_sas_uri("leakstatus", "status.json")
    logs_uri = azurite.blob_sas_uri("leaklogs", "log.txt")
    expired = azurite.expired_blob_sas_uri("leakstatus", "expired.json")
    protected = {"statusBlobUri": status_uri, "logsBlobUri": logs_uri,
                 "password": PASSWORD, "nested": {"token": TOKEN}}
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    try:
        port = server.getsockname()[1]
        agent.write_settings(ext_dir, 1, check_settings(port), protected, cipher="aes256")
        assert agent.run(ext_dir, "enable", 1).returncode == 0
        agent.wait_terminal(ext_dir, 1)
        # A failing status blob and a bad command: error paths log the most.
        agent.write_settings(ext_dir, 2, check_settings(port),
                             {**protected, "statusBlobUri": expired}, cipher="des3")
        agent.run(ext_dir, "enable", 2)
        agent.write_settings(ext_dir, 3, {"commandToExecute": "nope"}, protected)
        agent.run(ext_dir, "enable", 3)
        agent.write_settings(ext_dir, 4, {"commandToExecute": "connectivityCheck",
                                          "connectivityCheck": {"destination": {
                                              "address": f"http://u:{PASSWORD}@127.0.0.1/"}}},
                             protected)
        agent.run(ext_dir, "enable", 4)
        # A malformed protected value is echoed by validation: only redaction can hide it.
        agent.write_settings(ext_dir, 5, check_settings(port),
                             {**protected, "logsBlobUri": f"not-a-url-{PASSWORD}"})
        bad = agent.run(ext_dir, "enable", 5)
        assert agent.status(ext_dir, 5)["code"] == 13, bad.output
    finally:
        server.close()
    needles = [PASSWORD, TOKEN] + signatures(status_uri, logs_uri, expired)
    written = scan(agent.lib_dir, needles) + scan(agent.log_root, needles)
    written = [hit for hit in written if "/config/" not in hit and ".tenant-cert" not in hit]
    assert not written, "secrets on disk:\n" + "\n".join(written)
    outputs = "\n".join(run.output for run in agent.runs)
    assert not [n for n in needles if n in outputs], "a secret reached the agent's output"
    blobs = []
    for container in ("leakstatus", "leaklogs"):
        client = azurite.service().get_container_client(container)
        for blob in client.list_blobs():
            data = client.download_blob(blob.name).readall()
            blobs += [f"{container}/{blob.name}: {n}" for n in needles if n.encode() in data]
    assert not blobs, "secrets in blobs:\n" + "\n".join(blobs)
    assert azurite.read_blob("leaklogs", "log.txt"), "the logs blob was written"
