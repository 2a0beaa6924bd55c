"""Delete removes the files this capture wrote, never another capture's of the same path."""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
from typing import Any, Dict, Iterator, Tuple

import pytest

from capture_engine.errors import CaptureNotFoundError
from capture_engine.session import capture_files, delete_capture_files
from capture_engine.settings import CaptureRequest, parse_capture_settings
from plumbing.crashpoints import ARM_VARIABLE
from tests.capture_engine import traffic
from tests.capture_engine.conftest import ROOT
from tests.capture_engine.session_util import start_session

pytestmark = pytest.mark.root
SHARED = {"filePath": "packetcapture.cap"}  # 000:136: two captures, one filePath
RING = {"continuousCapture": True, "storageLocation": {"localPath": "ring.cap"},
        "captureSettings": {"fileCount": 3, "fileSizeInBytes": 2000}}


def _request(root, name: str, **fields: Any) -> CaptureRequest:
    settings = {"name": name, "storageLocation": SHARED, "interfaces": ["cap0"], **fields}
    return parse_capture_settings(settings, capture_root=str(root))


def _run(lab, request: CaptureRequest, port: int, count: int = 10) -> Dict[str, Any]:
    running = start_session(lab, request, "rawsocket")
    traffic.blast(lab, count, 200, port, 0.001)
    running.stop.set()
    status = running.finish().querystatus()
    assert status["packetCaptureStatus"] == "Stopped", status
    return status


def test_delete_leaves_the_file_of_another_capture_with_the_same_path(lab, tmp_path):
    seventh, fifth = _request(tmp_path, "TestPacketCapture7"), _request(tmp_path,
                                                                       "TestPacketCapture5")
    first = _run(lab, seventh, 7601)["localPath"]
    other = _run(lab, fifth, 7602)["localPath"]
    again = _run(lab, seventh, 7603)["localPath"]  # the same capture started once more
    assert (first, other, again) == tuple(str(tmp_path / f"packetcapture{g}.cap")
                                          for g in ("", "~2", "~3"))
    assert capture_files(seventh) == [first, again], "the files of every start of the name"
    assert delete_capture_files(fifth) == [other]
    assert os.path.exists(first) and os.path.exists(again), "another capture's file deleted"
    assert delete_capture_files(seventh) == [first, again]
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".cap")], os.listdir(tmp_path)
    with pytest.raises(CaptureNotFoundError):
        delete_capture_files(fifth)


def test_delete_of_a_ring_leaves_another_ring_of_the_same_base(lab, tmp_path):
    first, second = (_request(tmp_path, name, **RING) for name in ("ringA", "ringB"))
    kept = _run(lab, first, 7604, count=60)
    other = _run(lab, second, 7605, count=60)
    assert kept["localFileCount"] == other["localFileCount"] == 3, (kept, other)
    assert os.path.basename(other["firstLocalFile"]).startswith("ring~2_"), other
    theirs = capture_files(second)
    removed = delete_capture_files(first)
    assert len(removed) == 3 and all(os.path.basename(p).startswith("ring_") for p in removed)
    assert all(os.path.exists(p) for p in theirs) and capture_files(second) == theirs


def _killed_start(lab, request: Dict[str, Any], root, point: str) -> Tuple[int, str]:
    """A capture started in a process of its own, SIGKILLed at `point` (a worker killed
    mid-capture): its exit status and stderr."""
    code = ("import json, sys\n"
            "from capture_engine.session import run_capture\n"
            "from capture_engine.settings import parse_capture_settings\n"
            "request = parse_capture_settings(json.loads(sys.argv[1]), capture_root=sys.argv[2])\n"
            "run_capture(request, backend='rawsocket', netns=sys.argv[3])\n")
    done = subprocess.run([sys.executable, "-c", code, json.dumps(request), str(root),
                           lab.vm.name], cwd=ROOT, env={**os.environ, ARM_VARIABLE: point},
                          capture_output=True, timeout=60)
    return done.returncode, done.stderr.decode(errors="replace")


@pytest.mark.parametrize("point", ["capture.file_opened", "capture.rotated"])
def test_the_files_of_a_killed_capture_are_its_own_after_a_restart(lab, tmp_path, point):
    kept = _request(tmp_path, "kept", **RING)
    _run(lab, kept, 7606, count=60)
    before = capture_files(kept)
    settings = {"name": "killed", "interfaces": ["cap0"], "timeLimitInSeconds": 30, **RING}
    with traffic_while(lab, 7607):
        code, err = _killed_start(lab, settings, tmp_path, point)
    assert code == -9, f"not killed at {point}: {code} {err[-500:]}"
    killed = parse_capture_settings({**settings, "action": "delete"},
                                    capture_root=str(tmp_path))
    theirs = capture_files(killed)
    assert theirs and all(os.path.basename(p).startswith("ring~2_") for p in theirs), theirs
    assert delete_capture_files(killed) == theirs
    assert capture_files(kept) == before and all(os.path.exists(p) for p in before), \
        "the other capture's ring was touched"


@contextlib.contextmanager
def traffic_while(lab, port: int) -> Iterator[None]:
    """UDP to the VM from a thread while the block runs (bounded: 400 datagrams, 4 s)."""
    thread = threading.Thread(target=traffic.blast, args=(lab, 400, 200, port, 0.01),
                              daemon=True)
    thread.start()
    try:
        yield
    finally:
        thread.join(30)


def test_a_claim_left_without_its_file_never_reaches_the_next_start_of_the_name(lab, tmp_path):
    """Killed between its claim and its file: nothing of it is on disk; the next start that
    picks the name takes the claim over, and deleting the dead capture leaves its files."""
    settings = {"name": "dead", "interfaces": ["cap0"], "storageLocation": SHARED}
    code, err = _killed_start(lab, settings, tmp_path, "capture.claimed")
    assert code == -9, f"not killed at capture.claimed: {code} {err[-500:]}"
    dead = parse_capture_settings({**settings, "action": "delete"}, capture_root=str(tmp_path))
    assert capture_files(dead) == []
    alive = _request(tmp_path, "alive")
    path = _run(lab, alive, 7608)["localPath"]
    assert path == str(tmp_path / "packetcapture.cap"), "the name was left taken"
    with pytest.raises(CaptureNotFoundError):
        delete_capture_files(dead)
    assert capture_files(alive) == [path] and os.path.exists(path)
