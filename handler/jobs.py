"""Detached workers: start one per long operation, tell live ones from dead, stop them.

A job record is written before its worker is started (write ahead), so a kill at any point
leaves a record to settle, never a worker nobody knows. Until a pid is recorded, the record
names the enable that wrote it (the spawner); once that enable is gone, the worker is looked
for by its command line, which carries the job id.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Callable, Iterable, Optional

from handler.state import JobRecord, StateStore
from plumbing.clock import Clock, SystemClock
from plumbing.procid import ProcessId, find_by_argv, identify, is_running

WORKER_ENTRY = ("-m", "handler", "worker")
STOP_POLL = 0.1  # how often a stopping worker is looked at
_SYSTEM_CLOCK = SystemClock()


def worker_process(job: JobRecord) -> Optional[ProcessId]:
    """The live worker process of `job`, or None when it has none (never started, or gone)."""
    if job.finished:
        return None
    if job.pid > 0:
        process = ProcessId(job.pid, job.start_ticks)
        if not is_running(process):
            return None
        return process if job.start_ticks else _by_argv(job)
    if job.spawner_pid > 0 and is_running(ProcessId(job.spawner_pid, job.spawner_ticks)):
        return ProcessId(0, 0)  # its enable is still between the record and the spawn
    return _by_argv(job)


def is_alive(job: JobRecord) -> bool:
    return worker_process(job) is not None


def _by_argv(job: JobRecord) -> Optional[ProcessId]:
    return find_by_argv(["worker", job.job_id])


def spawn_worker(job_id: str, extension_dir: Path) -> ProcessId:
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
    return identify(child.pid) or ProcessId(child.pid, 0)


def reap_dead(store: StateStore, on_death: Callable[[JobRecord], JobRecord]) -> list[JobRecord]:
    """Mark every unfinished job without a live worker as died; adopt a worker found by its
    command line; return the jobs marked. The caller holds the state lock."""
    died = []
    for job in store.jobs():
        if job.finished:
            continue
        process = worker_process(job)
        if process is None:
            died.append(on_death(job))
        elif process.pid and (job.pid, job.start_ticks) != (process.pid, process.start):
            store.update_job(job.job_id, pid=process.pid, start_ticks=process.start,
                             state="running")
    return died


def signal_worker(job: JobRecord, signum: int) -> bool:
    """Send `signum` to the job's own worker, never to anything else (pid 0 or -1 would reach
    our own process group or every process); False when there is no live worker."""
    process = worker_process(job)
    if process is None or process.pid <= 0:
        return False
    try:
        os.kill(process.pid, signum)
    except ProcessLookupError:
        return False
    return True


def stop_workers(store: StateStore, jobs: Iterable[JobRecord], timeout: float,
                 kill: bool, clock: Clock = _SYSTEM_CLOCK) -> list[JobRecord]:
    """SIGTERM each live worker (they finish their work, e.g. upload), wait up to timeout on
    `clock`; then SIGKILL the group of those still running when `kill`. Returns those still
    running."""
    pending = [job for job in jobs if signal_worker(job, signal.SIGTERM)]
    deadline = clock.monotonic() + timeout
    while pending and clock.monotonic() < deadline:
        pending = [job for job in pending if is_alive(job)]
        if pending:
            clock.sleep(STOP_POLL)
    for job in pending if kill else ():
        process = worker_process(job)
        if process is not None and process.pid > 0:
            try:
                os.killpg(process.pid, signal.SIGKILL)  # the worker leads its own session
            except (ProcessLookupError, PermissionError):
                pass
    return pending
