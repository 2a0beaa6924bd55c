"""Hunt: enable records the taskId it parsed, then the worker parses the settings file again.
A settings file replaced in between makes the worker snapshot another task's disks while the
record claims the first task: the first task sent again is "already processed", with no
snapshot of its disk anywhere."""
from __future__ import annotations

import os
import threading
import time

import pytest

from plumbing.crashpoints import TRACE_VARIABLE
from tests.handler.test_snapshot_via_agent import snapshot_env
from tests.snapshot.conftest import make_disks, settings_dicts, wait_for, write_vmbackup_conf

pytestmark = pytest.mark.root


class PausingTrace:
    """A FIFO as the crash trace: the first crash point blocks (opening it for writing) until
    `release()` opens the reading end, which then drains every line until `close()`."""

    def __init__(self, path) -> None:
        self.path = str(path)
        os.mkfifo(self.path)
        self.lines = b""
        self._fd = -1
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drain, daemon=True)

    def release(self) -> None:
        self._fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        self._thread.start()

    def close(self) -> None:
        if self._fd < 0:  # never released: let a blocked writer through, then stop
            self.release()
        self._stop.set()
        self._thread.join(5)
        os.close(self._fd)

    def _drain(self) -> None:
        while not self._stop.is_set():
            try:
                data = os.read(self._fd, 65536)
            except BlockingIOError:
                data = b""
            self.lines += data
            if not data:
                time.sleep(0.01)


def snapshots_of(azurite, uri: str) -> list:
    container, blob = uri.split("?")[0].rsplit("/", 2)[-2:]
    return [b for b in azurite.service().get_container_client(container)
            .list_blobs(name_starts_with=blob, include=["snapshots"]) if b.snapshot]


def test_a_task_is_never_already_processed_without_its_snapshot(agent, ext_dir, azurite, confdir,
                                                                tmp_path):
    write_vmbackup_conf(confdir, [], fsfreeze=False)
    agent.extra_env.update(snapshot_env(confdir))
    trace = PausingTrace(tmp_path / "trace.fifo")
    agent.extra_env[TRACE_VARIABLE] = trace.path
    disk_a, disk_b = make_disks(azurite, 2)
    task_a, task_b = settings_dicts([disk_a]), settings_dicts([disk_b])
    agent.write_settings(ext_dir, 1, *task_a)
    runs = []
    enable = threading.Thread(target=lambda: runs.append(agent.run(ext_dir, "enable", 1)))
    enable.start()
    try:
        # Enable has parsed task A and recorded it; it now waits at its first crash point.
        assert wait_for(lambda: (ext_dir / "state" / "ops" / "1.json").exists(), timeout=30)
        agent.write_settings(ext_dir, 1, *task_b)  # the file is replaced meanwhile
    finally:
        trace.release()
        enable.join(60)
    try:
        first = agent.wait_terminal(ext_dir, 1, timeout=60)
        agent.write_settings(ext_dir, 2, *task_a)  # the service sends task A again
        agent.run(ext_dir, "enable", 2)
        again = agent.wait_terminal(ext_dir, 2, timeout=60)
    finally:
        trace.close()
    message = again["formattedMessage"]["message"]
    if again["status"] == "success":
        assert snapshots_of(azurite, disk_a), (
            f"task A reported {again['code']} ({message[:120]}) but its disk has no snapshot; "
            f"sequence 1 ({first['code']}) snapshotted task B's disk: "
            f"{len(snapshots_of(azurite, disk_b))} snapshot(s)")
