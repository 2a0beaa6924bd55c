"""Detached workers: start one per long operation, tell live ones from dead, stop them."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterable, List, Optional

from handler.state import JobRecord, StateStore

WORKER_ENTRY = ("-m", "handler", "worker")


def process_create_time(pid: int) -> Optional[float]:
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return None


def is_alive(job: JobRecord) -> bool:
    """Alive means: that pid exists, is the same process (start time), and is not a zombie."""
    import psutil

    if job.pid <= 0:
        return False
    try:
        process = psutil.Process(job.pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return abs(process.create_time() - job.create_time) < 0.05
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def spawn_worker(job_id: str, extension_dir: Path) -> int:
    """Start `python -m handler worker JOB` fully detached: new session, no stdio, no cwd tie."""
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        child = subprocess.Popen(
            [sys.executable, "-s", *WORKER_ENTRY, job_id],
            stdin=devnull, stdout=devnull, stderr=devnull, close_fds=True,
            cwd=str(extension_dir), start_new_session=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path[1:] + [str(extension_dir)])},
        )
    finally:
        os.close(devnull)
    return child.pid


def reap_dead(store: StateStore, on_death: Callable[[JobRecord], JobRecord]) -> List[JobRecord]:
    """Mark every job whose process is gone without a result as died; return those jobs."""
    died = []
    for job in store.jobs():
        if job.finished or (job.state == "starting" and job.pid == 0):
            continue
        if not is_alive(job):
            died.append(on_death(job))
    return died


def stop_workers(store: StateStore, jobs: Iterable[JobRecord], timeout: float,
                 poll: Callable[[float], None] = time.sleep) -> List[JobRecord]:
    """SIGTERM each live worker (they finish their work, e.g. upload), wait up to timeout."""
    pending = [job for job in jobs if not job.finished and is_alive(job)]
    for job in pending:
        store.update_job(job.job_id, stop_requested=True)
        try:
            os.kill(job.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        pending = [job for job in pending if is_alive(job)]
        if pending:
            poll(0.1)
    for job in pending:  # still alive after the grace period: kill the worker's group
        try:
            os.killpg(job.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return pending
