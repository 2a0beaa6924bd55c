"""Hunt: the state lock is a plain blocking flock. A worker stopped (SIGSTOP) inside its locked
section, here recording its result, blocks every later enable until the agent kills it."""
from __future__ import annotations

import fcntl
import os
import signal
import threading
import uuid

import pytest

from plumbing.crashpoints import TRACE_VARIABLE
from tests.handler.test_snapshot_via_agent import snapshot_env
from tests.snapshot.conftest import make_disks, settings_dicts, wait_for, write_vmbackup_conf

pytestmark = pytest.mark.root

LIFECYCLE_BOUND = 60.0
AGENT_PATIENCE = 65.0  # this test's stand-in for the agent's 300 s kill, to fail sooner


class Turnstile:
    """A FIFO as the crash trace: every crash point waits (opening it) until the reader lets it
    through; after `stop_after` is read, the next crash point is held until `open_wide()`."""

    def __init__(self, path, stop_after: str) -> None:
        self.path, self.stop_after = str(path), stop_after
        os.mkfifo(self.path)
        self.lines: list = []
        self.holding = threading.Event()
        self._wide = threading.Event()
        self._thread = threading.Thread(target=self._turn, daemon=True)
        self._thread.start()

    def open_wide(self) -> None:
        self._wide.set()
        fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)  # a blocked writer goes on
        self._thread.join(5)
        threading.Thread(target=self._drain, args=(fd,), daemon=True).start()

    def _turn(self) -> None:
        while not self._wide.is_set():
            with open(self.path, "rb") as stream:  # returns when a crash point opens it
                data = stream.read()
            self.lines += data.decode().splitlines()
            if any(line.endswith(" " + self.stop_after) for line in self.lines):
                self.holding.set()
                return

    @staticmethod
    def _drain(fd: int) -> None:
        for tick in range(6000):  # bounded: a minute of draining at most
            try:
                if os.read(fd, 65536) == b"" and tick > 100:
                    break
            except BlockingIOError:
                pass
            threading.Event().wait(0.01)
        os.close(fd)


def lock_is_held(ext_dir) -> bool:
    """The state lock is an flock on the state folder itself."""
    fd = os.open(ext_dir / "state", os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def test_enable_ends_in_time_while_a_stopped_worker_holds_the_state_lock(agent, ext_dir, azurite,
                                                                         confdir, tmp_path):
    write_vmbackup_conf(confdir, [], fsfreeze=False)
    agent.extra_env.update(snapshot_env(confdir))
    gate = Turnstile(tmp_path / "trace.fifo", "snapshot.run.after_disk_snapshots")
    agent.extra_env[TRACE_VARIABLE] = gate.path
    worker = 0
    try:
        agent.write_settings(ext_dir, 1, *settings_dicts(make_disks(azurite, 1)))
        assert agent.run(ext_dir, "enable", 1).returncode == 0
        # The worker took the snapshot; its next crash point is inside the state lock, where it
        # records its result (handler.worker.finished). It is held there, then stopped.
        assert gate.holding.wait(60), f"the worker never snapshotted: {gate.lines[-5:]}"
        assert wait_for(lambda: lock_is_held(ext_dir), timeout=10), "held in its locked step"
        worker = int([ln for ln in gate.lines if ln.endswith("after_disk_snapshots")][0].split()[0])
        os.kill(worker, signal.SIGSTOP)
        del agent.extra_env[TRACE_VARIABLE]
        agent.write_settings(ext_dir, 2, {"taskId": str(uuid.uuid4()) + "_1",
                                          "commandToExecute": "install"})
        enable = agent.run(ext_dir, "enable", 2, timeout=AGENT_PATIENCE)
        assert not enable.killed and enable.duration < LIFECYCLE_BOUND, \
            f"enable ran {enable.duration:.0f}s (killed: {enable.killed}) behind a stopped worker"
    finally:
        if worker:
            os.kill(worker, signal.SIGCONT)
        gate.open_wide()
        assert wait_for(lambda: not lock_is_held(ext_dir), timeout=30), "the worker lets go"
