"""disable/uninstall's stop grace is read from the injected clock: a worker that ignores
SIGTERM is given up on (and killed by uninstall) when the clock passes the grace."""
from __future__ import annotations

import subprocess
import sys
import time

from handler.jobs import is_alive, stop_workers
from handler.state import JobRecord, StateStore
from plumbing.clock import ManualClock
from plumbing.procid import identify

# Ignores SIGTERM, says so, then waits (bounded: it ends by itself if the test fails).
STUBBORN = ("import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('ready', flush=True); time.sleep(120)")


def test_grace_ends_on_the_clock_and_the_stubborn_worker_is_killed(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", STUBBORN, "worker", "stubborn-job"],
                             stdout=subprocess.PIPE, start_new_session=True)
    try:
        assert child.stdout is not None and child.stdout.readline() == b"ready\n"
        process = identify(child.pid)
        assert process is not None
        job = JobRecord("stubborn-job", "packetCapture", 1, "c1", state="running",
                        pid=process.pid, start_ticks=process.start)
        store = StateStore(tmp_path / "state", tmp_path / "mrseq")
        started = time.monotonic()
        # Every read of the clock finds 10 s gone: the 600 s grace passes in ~60 polls.
        left = stop_workers(store, [job], 600.0, kill=True, clock=ManualClock(tick=10.0))
        assert [j.job_id for j in left] == ["stubborn-job"], "it outlived the grace"
        assert child.wait(10) == -9, "uninstall's kill reaches the worker's group"
        assert not is_alive(job)
        assert time.monotonic() - started < 60, "the grace was waited for in real time"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
