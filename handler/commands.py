"""The lifecycle commands the agent runs, and the worker entry, as plain functions.

Every command holds the state lock only to read and write local records, and sends status and
logs to their blobs outside it, within a time budget that keeps it well inside the agent's
timeouts whatever the storage does.
"""
from __future__ import annotations

import shutil
import signal
from typing import Any, Optional

from handler import jobs
from handler.errors import (
    HandlerError,
    NoRuntimeSettingsError,
    StateWriteError,
    WorkerStoppedError,
)
from handler.operations.base import OperationStopped, Outcome
from handler.publisher import BackgroundPublisher
from handler.runtime import BlobFailure, Runtime
from handler.settings import HandlerSettings, command_of
from handler.settings_file import choose_sequence
from handler.state import OperationRecord
from handler.status import write_heartbeat
from plumbing.crashpoints import crashpoint
from plumbing.proc import kill_session

# Seconds a lifecycle command may spend on blob uploads (status, logs), retries included:
# with storage that hangs, enable and disable still end well within a minute (the agent allows
# 300, but runs extensions one at a time: every second enable holds delays the others). A
# worker goes on publishing its status on its own time.
ENABLE_STORAGE_SECONDS = 25.0
DISABLE_STORAGE_SECONDS = 20.0
# How long disable/uninstall wait for workers to stop (a capture drains and closes its file).
# Disable then leaves a worker that is still uploading to finish on its own; uninstall kills it.
STOP_GRACE_SECONDS = 30.0
WORKER_STORAGE_SECONDS = 120.0
WORKER_LOCK_WAIT_SECONDS = 120.0


def install(rt: Runtime) -> int:
    rt.log.info("install: state in %s", rt.env.state_dir)
    return 0


def update(rt: Runtime) -> int:
    """Carry our records over from the old version's folder (the agent copies only mrseq
    and status/; the old folder is deleted after its uninstall)."""
    old_version = rt.environ.get("AZURE_GUEST_AGENT_UPDATING_FROM_VERSION", "")
    ext_dir = rt.env.extension_dir
    prefix = ext_dir.name.rsplit("-", 1)[0]
    old_state = ext_dir.parent / f"{prefix}-{old_version}" / "state"
    rt.log.info("update from %s to %s", old_version or "?", ext_dir.name)
    if old_version and old_state.is_dir() and old_state != rt.env.state_dir:
        with rt.store.lock():
            shutil.copytree(old_state, rt.env.state_dir, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("handler.lock"))
        rt.log.info("update: state carried over from %s", old_state)
    return 0


def disable(rt: Runtime) -> int:
    """Stop the workers, report. Its storage time is what the lock wait and the workers' grace
    left of their sum: a slow lock never stretches disable past about a minute."""
    budget_end = rt.clock.monotonic() + STOP_GRACE_SECONDS + DISABLE_STORAGE_SECONDS
    with rt.store.lock():
        running = [job for job in rt.store.jobs() if not job.finished]
    rt.log.info("disable: stopping %d running worker(s)", len(running))
    grace = max(1.0, min(STOP_GRACE_SECONDS, budget_end - DISABLE_STORAGE_SECONDS / 2
                         - rt.clock.monotonic()))
    left = jobs.stop_workers(rt.store, running, grace, kill=False, clock=rt.clock)
    for job in left:
        rt.log.warning("disable: worker %s still finishing (e.g. uploading); it reports itself",
                       job.job_id)
    now = rt.clock.monotonic()
    rt.publish(deadline=max(now + 2.0, min(budget_end, now + DISABLE_STORAGE_SECONDS)))
    return 0


def uninstall(rt: Runtime) -> int:
    with rt.store.lock():
        running = [job for job in rt.store.jobs() if not job.finished]
    killed = jobs.stop_workers(rt.store, running, STOP_GRACE_SECONDS, kill=True,
                               clock=rt.clock)
    for job in killed:  # a worker leads its own session: what it started there (scripts, psql)
        if job.pid > 0:  # dies with it; the thaw watchdog has a session of its own
            kill_session(job.pid)
    rt.log.info("uninstall: workers stopped (%d killed after %.0fs)", len(killed),
                STOP_GRACE_SECONDS)
    return 0


def enable(rt: Runtime) -> int:
    heartbeat(rt, "enabling")
    deadline = rt.clock.monotonic() + ENABLE_STORAGE_SECONDS
    seq = choose_sequence(rt.env.config_folder, rt.environ)
    if seq is None:
        raise NoRuntimeSettingsError(f"no *.settings file in {rt.env.config_folder}")
    with rt.store.lock():
        record = _already_processed(rt, seq)
    if record is not None:
        rt.log.info("enable: sequence %d already processed (%s); reporting it", seq,
                    record.status)
        record = rt.publish(seq, deadline=deadline) or record
    else:
        record = _enable_new(rt, seq, deadline)
    heartbeat(rt, f"sequence {seq}: {record.status}")
    return 0 if record.status != "error" else 1


def _already_processed(rt: Runtime, seq: int) -> Optional[OperationRecord]:
    """The record of `seq` when an earlier enable took it to effect; None when it must be
    (re)done: never seen, or written ahead by an enable killed before it acted."""
    record = rt.store.operation(seq)
    if record is None:
        if rt.store.last_seq() == seq:  # processed by a version whose records we lack
            return OperationRecord(seq, "", "success", 0, "already processed")
        return None
    if record.terminal or record.jobs or record.detail.get("acted"):
        rt.store.set_last_seq(seq)
        return record
    return None


def _enable_new(rt: Runtime, seq: int, deadline: float) -> OperationRecord:
    with rt.store.lock():
        record, settings = _write_ahead(rt, seq)
        if settings is not None and rt.store.unsaved:  # never act on what is not recorded
            failure = StateWriteError("cannot record the operation, so it was not started: "
                                      + "; ".join(rt.store.unsaved[:3]))
            record.status, record.code = "error", rt.code_for(settings.command, failure)
            record.message, settings = failure.message, None
            rt.store.save_operation(record)
            rt.refresh_local(seq)
    if settings is None:
        return rt.publish(seq, with_log=True, deadline=deadline) or record
    preflight = rt.publish(seq, deadline=deadline)  # the first status blob write: fail fast
    with rt.store.lock():
        record = rt.store.operation(seq) or record
        blob_failure: Optional[BlobFailure] = (preflight.detail.get("statusBlobError")
                                               if preflight else None)
        if blob_failure and rt.registry[settings.command].starts_work(settings):
            record.status, record.code = "error", blob_failure["code"]
            record.message = f"{settings.command} not started: status blob unavailable"
        else:
            record = _act(rt, settings, record)
        record.detail["acted"] = True
        rt.store.save_operation(record)
        rt.store.set_last_seq(seq)
        crashpoint("handler.enable.acted")
        rt.refresh_local(seq)
    return rt.publish(seq, with_log=True, deadline=deadline) or record


def _write_ahead(rt: Runtime,
                 seq: int) -> tuple[OperationRecord, Optional[HandlerSettings[Any]]]:
    """Parse the settings and record the intent before acting on it. Lock held."""
    raw = rt.raw_settings(seq)
    record = OperationRecord(seq, "", "transitioning", 0, "validating settings")
    settings = None
    if raw.empty:
        record.status, record.message = "success", "no settings: nothing to do"
    else:
        try:
            settings = rt.settings(seq, raw)
            record.command, record.message = settings.command, f"{settings.command}: starting"
            record.detail.update(rt.registry[settings.command].describe(settings))
        except HandlerError as exc:
            command = command_of(raw.public or {}, rt.registry)
            record.command = command if command in rt.registry else ""
            record.status, record.code = "error", rt.code_for(command, exc)
            record.message = str(exc)
            rt.log.error("enable of sequence %d failed: [%d] %s", seq, record.code, exc)
    rt.store.save_operation(record)
    if settings is None:
        rt.store.set_last_seq(seq)
    crashpoint("handler.enable.recorded")
    rt.refresh_local(seq)
    return record, settings


def _act(rt: Runtime, settings: HandlerSettings[Any], ahead: OperationRecord) -> OperationRecord:
    """Start the operation, or adopt the worker an interrupted enable already started."""
    started = [job for job in rt.store.jobs() if job.seq == settings.seq
               and job.command == settings.command and (not job.finished or job.pid > 0)]
    if started:
        ahead.jobs = [job.job_id for job in started]
        ahead.message = f"{settings.command}: resumed after an interrupted enable"
        return ahead
    try:
        record = rt.registry[settings.command].enable(settings, rt)
    except HandlerError as exc:
        record = ahead
        record.status, record.code = "error", rt.code_for(settings.command, exc)
        record.message = str(exc)
        rt.log.error("enable of sequence %d failed: [%d] %s", settings.seq, record.code, exc)
    record.detail = {**ahead.detail, **record.detail}
    return record


def worker(rt: Runtime, job_id: str) -> int:
    """Run one job to its end; whatever happens, its record ends finished."""
    rt.store.lock_wait = WORKER_LOCK_WAIT_SECONDS  # no agent timeout on a worker: be patient
    with rt.store.lock():
        job = rt.register_worker(job_id)
    if job is None:
        rt.log.error("worker: no unfinished job %s", job_id)
        return 1
    crashpoint("handler.worker.registered")
    op = rt.registry[job.command]
    signal.signal(signal.SIGTERM, lambda signum, frame: op.stop())
    background = BackgroundPublisher(rt.publish, rt.log)
    rt.status_changed = background.poke
    settings: Optional[HandlerSettings[Any]] = None
    try:
        settings = rt.job_settings(job)
        outcome = op.work(settings, job, rt)
    except OperationStopped as exc:
        outcome = _failed(rt, job.command, WorkerStoppedError(str(exc)))
    except HandlerError as exc:
        outcome = _failed(rt, job.command, exc)
    except Exception as exc:  # noqa: BLE001 - a worker must always leave a terminal record
        rt.log.exception("worker %s crashed", job_id)
        outcome = _failed(rt, job.command, HandlerError(
            f"internal error: {type(exc).__name__}: {rt.redactor(str(exc))}"))
    background.close()
    with rt.store.lock():
        rt.finish_job(job_id, outcome)
        crashpoint("handler.worker.finished")
        latest = rt.store.last_seq()
    rt.log.info("worker %s finished: %s [%d] %s", job_id, outcome.status, outcome.code,
                outcome.message)
    deadline = rt.clock.monotonic() + WORKER_STORAGE_SECONDS
    rt.publish(job.seq, with_log=True, deadline=deadline, blob_first=True)
    if latest is not None and latest != job.seq:
        rt.publish(latest, deadline=deadline, blob_first=True)
    return 0


def _failed(rt: Runtime, command: str, error: HandlerError) -> Outcome:
    return Outcome("error", rt.code_for(command, error), error.message)


def heartbeat(rt: Runtime, message: str) -> None:
    if rt.env.heartbeat_file is not None and rt.manifest.get("reportHeartbeat") is True:
        try:
            write_heartbeat(rt.env.heartbeat_file, message)
        except OSError:
            rt.log.warning("cannot write heartbeat file %s", rt.env.heartbeat_file)
