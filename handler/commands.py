"""The lifecycle commands the agent runs, and the worker entry, as plain functions."""
from __future__ import annotations

import shutil
import signal

from handler import jobs
from handler.errors import HandlerError, NoRuntimeSettingsError
from handler.operations.base import STOPPED_CODE, OperationStopped, Outcome
from handler.runtime import Runtime
from handler.settings_file import choose_sequence
from handler.state import OperationRecord
from handler.status import write_heartbeat

# Disable may take 900 s; workers get most of it to finish (a capture still uploads).
DISABLE_GRACE_SECONDS = 600.0
UNINSTALL_GRACE_SECONDS = 120.0


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
    with rt.store.lock():
        running = [job for job in rt.store.jobs() if not job.finished]
    rt.log.info("disable: stopping %d running worker(s)", len(running))
    stuck = jobs.stop_workers(rt.store, running, DISABLE_GRACE_SECONDS)
    with rt.store.lock():
        for job in stuck:
            rt.finish_job(job.job_id, Outcome("error", 50, f"{job.name}: worker did not stop "
                                                         f"within {DISABLE_GRACE_SECONDS:.0f}s "
                                                         f"of disable and was killed"), "died")
        rt.refresh_status()
    return 0


def uninstall(rt: Runtime) -> int:
    with rt.store.lock():
        running = [job for job in rt.store.jobs() if not job.finished]
    jobs.stop_workers(rt.store, running, UNINSTALL_GRACE_SECONDS)
    rt.log.info("uninstall: workers stopped")
    return 0


def enable(rt: Runtime) -> int:
    heartbeat(rt, "enabling")
    seq = choose_sequence(rt.env.config_folder, rt.environ)
    with rt.store.lock():
        if seq is None:
            raise NoRuntimeSettingsError(f"no *.settings file in {rt.env.config_folder}")
        if rt.store.last_seq() == seq:
            return _report_processed(rt, seq)
        record = _enable_new(rt, seq)
        rt.store.set_last_seq(seq)
        record = rt.refresh_status(seq) or record
        rt.upload_log(rt.cached_settings(seq), record)
    heartbeat(rt, f"sequence {seq}: {record.status}")
    return 0 if record.status != "error" else 1


def _report_processed(rt: Runtime, seq: int) -> int:
    """The agent re-ran enable for a sequence number we already took: never redo it."""
    record = rt.store.operation(seq)
    if record is None:  # processed by a version whose records we do not have
        rt.log.info("enable: sequence %d already processed; keeping its status", seq)
        return 0
    rt.log.info("enable: sequence %d already processed (%s); reporting it", seq, record.status)
    record = rt.refresh_status(seq) or record
    return 0 if record.status != "error" else 1


def _enable_new(rt: Runtime, seq: int) -> OperationRecord:
    raw = rt.raw_settings(seq)
    if raw.empty:
        record = OperationRecord(seq, "", "success", 0, "no settings: nothing to do")
        rt.store.save_operation(record)
        return record
    record = OperationRecord(seq, "", "transitioning", 0, "validating settings")
    try:
        settings = rt.settings(seq, raw)
        record.command = settings.command
        record.message = f"{settings.command}: starting"
        rt.store.save_operation(record)
        preflight = rt.refresh_status(seq)  # the first status blob write: fail fast
        if preflight is not None and preflight.detail.get("statusBlobError"):
            failure = preflight.detail["statusBlobError"]
            record.status, record.code = "error", failure["code"]
            record.message = f"{settings.command} not started: status blob unavailable"
            record.detail = preflight.detail
        else:
            record = rt.registry[settings.command].enable(settings, rt)
    except HandlerError as exc:
        rt.log.error("enable of sequence %d failed: [%d] %s", seq, exc.code, exc)
        record.status, record.code, record.message = "error", exc.code, str(exc)
    rt.store.save_operation(record)
    return record


def worker(rt: Runtime, job_id: str) -> int:
    """Run one job to its end; whatever happens, its record ends finished."""
    job = rt.store.job(job_id)
    if job is None:
        rt.log.error("worker: no job %s", job_id)
        return 1
    op = rt.registry[job.command]
    signal.signal(signal.SIGTERM, lambda signum, frame: op.stop())
    try:
        settings = rt.settings(job.seq)
        outcome = op.work(settings, job, rt)
    except OperationStopped as exc:
        outcome, settings = Outcome("error", STOPPED_CODE, str(exc)), rt.cached_settings(job.seq)
    except HandlerError as exc:
        outcome, settings = Outcome("error", exc.code, str(exc)), None
    except Exception as exc:  # noqa: BLE001 - a worker must always leave a terminal record
        rt.log.exception("worker %s crashed", job_id)
        outcome, settings = Outcome("error", 1, f"internal error: {type(exc).__name__}: "
                                                f"{rt.redactor(str(exc))}"), None
    with rt.store.lock():
        rt.finish_job(job_id, outcome)
        record = rt.store.operation(job.seq)
        rt.refresh_status()
        if record is not None:
            rt.upload_log(settings, rt.store.operation(job.seq) or record)
            if job.seq != rt.store.last_seq():
                rt.refresh_status(job.seq)
    rt.log.info("worker %s finished: %s [%d] %s", job_id, outcome.status, outcome.code,
                outcome.message)
    return 0


def heartbeat(rt: Runtime, message: str) -> None:
    if rt.env.heartbeat_file is not None and rt.manifest.get("reportHeartbeat") is True:
        try:
            write_heartbeat(rt.env.heartbeat_file, message)
        except OSError:
            rt.log.warning("cannot write heartbeat file %s", rt.env.heartbeat_file)
