"""action=delete forgets a capture's stream record with its files: a later local-only start
of the same name, whose worker dies, is not taken for a streamed capture with files to send."""
# ruff: noqa: F811 - fixtures imported so pytest finds them here
from __future__ import annotations

import json
import os
import signal
import time

import pytest

from devtools.azurite import free_port
from tests.handler.conftest import agent, certificate, ext_dir, extension_zip  # noqa: F401
from tests.handler.test_capture_via_agent import (  # noqa: F401 - fixtures
    capture,
    capture_agent,
    lab,
    substatus,
    wait_for_state,
)

pytestmark = pytest.mark.root


def test_delete_forgets_the_stream_record(capture_agent, ext_dir, tmp_path):
    agent = capture_agent
    root = tmp_path / "captures"
    down = f"http://127.0.0.1:{free_port()}/devstoreaccount1/c/vm/r.cap"  # nothing listens
    ring = {"continuousCapture": True, "interfaces": ["cap0"],
            "captureSettings": {"fileCount": 2, "fileSizeInBytes": 100_000}}
    agent.write_settings(ext_dir, 1, capture(
        "again", timeLimitInSeconds=2, storageLocation={"storagePath": down,
                                                        "localPath": "r.cap"}, **ring),
        {"storageSasToken": "sv=2021-08-06&sr=c&sp=rwc&sig=Zm9v"})
    assert agent.run(ext_dir, "enable", 1).returncode == 0
    ended = wait_for_state(agent, ext_dir, 1, "again", "Error", timeout=120)
    assert ended["errorCode"] == 140, ended
    agent.write_settings(ext_dir, 2, capture("again", "delete"))
    assert agent.run(ext_dir, "enable", 2).returncode == 0
    assert not [n for n in os.listdir(root) if n.startswith("r_")], "delete left files"
    streams = root / ".streams"
    left = [json.loads(p.read_text()) for p in streams.glob("*.json")] if streams.exists() \
        else []
    assert not [r for r in left if r["name"] == "again"], f"delete left the record: {left}"

    agent.write_settings(ext_dir, 3, capture(  # the same name and file, kept locally only
        "again", timeLimitInSeconds=120, storageLocation={"localPath": "r.cap"}, **ring))
    assert agent.run(ext_dir, "enable", 3).returncode == 0
    wait_for_state(agent, ext_dir, 3, "again", "Running")
    time.sleep(1)
    jobs = [json.loads(p.read_text()) for p in (ext_dir / "state" / "jobs").glob("*.json")]
    (pid,) = [j["pid"] for j in jobs if j.get("seq") == 3 and j.get("pid")]
    os.kill(pid, signal.SIGKILL)
    agent.run(ext_dir, "enable", 3)
    died = wait_for_state(agent, ext_dir, 3, "again", "Error")
    assert "streaming" not in died, f"a local-only capture said it had uploads: {died}"
