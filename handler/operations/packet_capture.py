"""commandToExecute=packetCapture: start/stop/delete sessions, one detached worker each."""
from __future__ import annotations

import json
import os
import signal
import threading
from typing import TYPE_CHECKING, Any, Mapping, Optional

from handler import jobs
from handler.errors import (
    HANDLER,
    PACKET_CAPTURE,
    CaptureStateError,
    SettingsValidationError,
    StatusCode,
    WorkerDiedError,
)
from handler.operations.base import Operation, Outcome
from handler.operations.context import OperationContext
from handler.settings import HandlerSettings, field
from handler.state import JobRecord, OperationRecord
from handler.status import Substatus
from plumbing.clock import utc_timestamp
from plumbing.crashpoints import crashpoint

if TYPE_CHECKING:  # the capability is imported when the operation runs, not with the table
    from capture_engine.settings import CaptureRequest

# The agent passes its environment through: tests (and containers) point the capture root
# elsewhere and may capture inside a named network namespace.
CAPTURE_ROOT_VARIABLE = "PACKET_CAPTURE_ROOT"
CAPTURE_NETNS_VARIABLE = "PACKET_CAPTURE_NETNS"
PROGRESS_REFRESH_SECONDS = 10.0
# A job that sends what a dead capture worker left unsent (capture_engine/recovery.py).
RECOVERY_PREFIX = "capture-recover-"
SUBSTATUS_STATES = {"Running": "transitioning", "NotStarted": "transitioning",
                    "Stopped": "success", "Error": "error", "Unknown": "warning"}


class PacketCapture(Operation["CaptureRequest"]):
    command = "packetCapture"

    def __init__(self, environ: Mapping[str, str] = os.environ) -> None:
        self._root_override = environ.get(CAPTURE_ROOT_VARIABLE) or ""
        self.netns = environ.get(CAPTURE_NETNS_VARIABLE) or None
        self._stop = threading.Event()

    @property
    def capture_root(self) -> str:
        """PACKET_CAPTURE_ROOT, else the capture engine's own default (declared there once)."""
        from capture_engine.settings import CAPTURE_ROOT

        return self._root_override or CAPTURE_ROOT

    def status_code(self, code: int) -> StatusCode:
        """The capture's own codes (every CaptureError class's, 100-150: its errors table) are
        reported as they are; the rest are the handler's (151 CaptureStateError, 13, 50...;
        1 is internal in both and labelled the handler's: the number cannot tell them apart)."""
        return StatusCode(PACKET_CAPTURE if code in _capture_codes() else HANDLER, code)

    def parse(self, public: Mapping[str, Any], protected: Mapping[str, Any]) -> CaptureRequest:
        from capture_engine.errors import CaptureSettingsError
        from capture_engine.settings import parse_capture_settings

        try:
            return parse_capture_settings(field(public, "packetCapture"),
                                          capture_root=self.capture_root,
                                          sas_token=protected.get("storageSasToken"))
        except CaptureSettingsError as exc:
            raise SettingsValidationError(
                [(_field_path(path), what) for path, what in exc.problems],
                code=exc.code, prefix="invalid packetCapture settings") from None

    # -- enable -------------------------------------------------------------------------
    def enable(self, settings: HandlerSettings[CaptureRequest],
               context: OperationContext) -> OperationRecord:
        request, seq = settings.request, settings.seq
        record = OperationRecord(seq, self.command, "transitioning", 0, "",
                                 detail={"action": request.action, "capture": request.name})
        running = self._running(context, request.name)
        if request.action == "start":
            if running is not None:
                raise CaptureStateError(f"capture {request.name!r} is already running")
            job = context.start_job(seq, self.command, request.name,
                                    job_id=f"capture-{seq}-{_safe(request.name)}")
            record.jobs, record.message = [job.job_id], f"capture {request.name!r} starting"
        elif request.action == "stop":
            record = self._stop_capture(record, request.name, running, context)
        else:
            record = self._delete(record, request, running, context)
        self._resume_uploads(context, request.name)
        return record

    def starts_work(self, settings: HandlerSettings[CaptureRequest]) -> bool:
        return settings.request.action == "start"

    def describe(self, settings: HandlerSettings[CaptureRequest]) -> dict[str, Any]:
        return {"action": settings.request.action, "capture": settings.request.name}

    def _stop_capture(self, record: OperationRecord, name: str, running: Optional[JobRecord],
                      context: OperationContext) -> OperationRecord:
        """Write ahead which worker this sequence stops, then signal it: a re-run of an
        interrupted stop finds its mark and follows that worker instead of failing."""
        latest = self._latest(context, name)
        if running is None and latest is not None and latest.stop_requested_by == record.seq:
            running = latest
        if running is None:
            return self._not_found(record, name, "stop")
        context.store.update_job(running.job_id, stop_requested_by=record.seq)
        jobs.signal_worker(running, signal.SIGTERM)
        record.jobs, record.message = [running.job_id], f"capture {name!r} stopping"
        return record

    def _delete(self, record: OperationRecord, request: CaptureRequest,
                running: Optional[JobRecord], context: OperationContext) -> OperationRecord:
        """Remove the session's local files and the session itself from the status. Every
        job of that name is marked first (write ahead), so a re-run of an interrupted delete
        knows the files it no longer finds were its own."""
        from capture_engine.errors import CaptureNotFoundError
        from capture_engine.recovery import forget_streams
        from capture_engine.session import delete_capture_files

        if running is not None:
            raise CaptureStateError(f"capture {request.name!r} is running: stop it first")
        sessions = [j for j in context.store.jobs()
                    if j.command == self.command and j.name == request.name]
        redo = bool(sessions) and all(j.deleted_by == record.seq for j in sessions)
        started = max(sessions, key=lambda j: j.seq) if sessions else None
        source = context.cached_settings(started.seq) if started else None
        target: CaptureRequest = source.request if source is not None else request
        for job in sessions:
            context.store.update_job(job.job_id, deleted_by=record.seq)
        crashpoint("handler.capture.delete_marked")
        try:
            removed = delete_capture_files(target)
        except CaptureNotFoundError as exc:
            if not redo:
                for job in sessions:
                    context.store.update_job(job.job_id, deleted_by=job.deleted_by)
                record.status, record.code, record.message = "error", exc.code, str(exc)
                return record
            removed = []
        forget_streams(target)
        record.status, record.message = "success", (
            f"capture {request.name!r} deleted: " + (', '.join(removed) if removed else
                                                      "no local file was left")
            + " (blobs are kept)")
        return record

    def _not_found(self, record: OperationRecord, name: str, action: str) -> OperationRecord:
        from capture_engine.errors import CaptureNotFoundError

        record.status, record.code = "error", CaptureNotFoundError.code
        record.message = f"cannot {action} capture {name!r}: no such running capture"
        return record

    # -- worker -------------------------------------------------------------------------
    def work(self, settings: HandlerSettings[CaptureRequest], job: JobRecord,
             context: OperationContext) -> Outcome:
        from capture_engine.session import run_capture

        if job.job_id.startswith(RECOVERY_PREFIX):
            return self._recover(settings, job, context)

        last_state, last_at = "", float("-inf")  # the last refresh: what, and when

        def progress(querystatus: dict[str, Any]) -> None:
            """Record every report; re-render status (and its blob) on a state change, else
            at most every PROGRESS_REFRESH_SECONDS: a 5-hour capture is not 9,000 uploads."""
            nonlocal last_state, last_at
            state, now = _substatus_state(querystatus), context.clock.monotonic()
            with context.store.lock():  # local records only: never an upload under the lock
                context.store.update_job(job.job_id, detail=querystatus, status=state,
                                         updated=utc_timestamp(context.clock.now()))
                if state != last_state or now - last_at >= PROGRESS_REFRESH_SECONDS:
                    context.refresh_local()
                    if job.seq != context.store.last_seq():
                        context.refresh_local(job.seq)
            if state != last_state or now - last_at >= PROGRESS_REFRESH_SECONDS:
                last_state, last_at = state, now
                context.status_changed()  # the blob is sent by a thread: capture never waits

        result = run_capture(settings.request, blob_store=context.blob_store,
                             sas_token=settings.request.sas_token,
                             stop_event=self._stop, on_progress=progress, clock=context.clock,
                             netns=self.netns)
        status = result.querystatus()
        context.log.info("capture %s ended: %s", job.name, json.dumps(status))
        return Outcome("error" if not result.ok else "success", result.error_code or 0,
                       _summary(status), detail=status)

    def stop(self) -> None:
        self._stop.set()  # the session drains, writes and uploads, then the worker ends

    def on_worker_death(self, job: JobRecord, context: OperationContext) -> Outcome:
        from capture_engine.recovery import pending_uploads
        from capture_engine.result import agent_stopped
        from capture_engine.session import capture_files

        settings = context.cached_settings(job.seq)
        files = capture_files(settings.request) if settings is not None else []
        status = agent_stopped(job.name, local_files=files).querystatus()
        status["captureStartTime"] = job.detail.get("captureStartTime")
        message = f"capture {job.name!r}: worker {job.pid} died (AgentStopped); local files kept"
        pending = pending_uploads(settings.request) if settings is not None else []
        if pending:  # the worker's stream record: files it never sent; a job sends them now
            status["streaming"] = {"state": "uploadPending", "pendingFiles": len(pending)}
            message += f"; uploading the {len(pending)} file(s) it had not sent"
            context.start_job(job.seq, self.command, job.name,
                              job_id=f"{RECOVERY_PREFIX}{job.seq}-{_safe(job.name)}-"
                              f"{os.getpid()}")
        return Outcome("error", WorkerDiedError.code, message, detail=status)

    def _resume_uploads(self, context: OperationContext, skip: str) -> None:
        """A capture that ended with files never sent (storage down at its end): a job sends
        them, once no worker of that name runs - every enable, until storage takes them."""
        from capture_engine.recovery import pending_uploads

        latest: dict[str, JobRecord] = {}
        busy = {skip}
        for job in context.store.jobs():
            if job.command != self.command:
                continue
            if not job.finished:
                busy.add(job.name)
            if job.name not in latest or (job.seq, job.started) >= (
                    latest[job.name].seq, latest[job.name].started):
                latest[job.name] = job
        for name, job in sorted(latest.items()):
            settings = None if name in busy or job.deleted_by >= 0 else \
                context.cached_settings(job.seq)
            if settings is not None and settings.request.storage_path and \
                    pending_uploads(settings.request):
                context.start_job(job.seq, self.command, name, job_id=f"{RECOVERY_PREFIX}"
                                  f"{job.seq}-{_safe(name)}-{os.getpid()}")

    def _recover(self, settings: HandlerSettings[CaptureRequest], job: JobRecord,
                 context: OperationContext) -> Outcome:
        """Send the files a dead worker left unsent; the capture's status stays AgentStopped
        and says what was recovered."""
        from capture_engine.recovery import recover_uploads

        died = [j for j in context.store.jobs() if j.name == job.name and
                j.command == self.command and j.job_id != job.job_id and j.finished]
        status: dict[str, Any] = dict(max(died, key=lambda j: j.started).detail) if died \
            else {"name": job.name, "packetCaptureStatus": "Error"}
        recovered = recover_uploads(settings.request, context.blob_store,
                                    settings.request.sas_token)
        status["streaming"] = recovered.status()
        if recovered.uploaded:
            status["uploadedUrl"], status["uploadedCount"] = recovered.uploaded[-1], \
                len(recovered.uploaded)
        message = (f"capture {job.name!r}: worker died (AgentStopped); "
                   f"{len(recovered.uploaded)} file(s) it had not sent were uploaded")
        if recovered.pending:
            message += f"; {len(recovered.pending)} still only local: {recovered.error}"
        return Outcome("error", WorkerDiedError.code, message, detail=status)

    # -- status -------------------------------------------------------------------------
    def settle(self, record: OperationRecord, context: OperationContext) -> OperationRecord:
        """start succeeds once the session runs: a 5-hour capture must not keep the agent
        waiting for a terminal status; the substatus carries the session's own state."""
        if record.terminal or not record.jobs:
            return record
        job = context.store.job(record.jobs[0])
        if job is None:
            return record
        if job.finished:
            return context.conclude(record)
        if record.detail.get("action") == "start" and \
                job.detail.get("packetCaptureStatus") == "Running":
            record.status, record.message = "success", f"capture {job.name!r} running"
            context.store.save_operation(record)
        return record

    def substatus(self, record: OperationRecord, context: OperationContext) -> list[Substatus]:
        """Every capture session this handler knows, newest job per name."""
        latest: dict[str, JobRecord] = {}
        for job in context.store.jobs():
            if job.command == self.command and job.deleted_by < 0:
                if job.name not in latest or (job.seq, job.started) >= (
                        latest[job.name].seq, latest[job.name].started):
                    latest[job.name] = job
        return [Substatus(name, _job_state(job), self.status_code(job.code), json.dumps(
            job.detail or {"name": name, "packetCaptureStatus": "NotStarted",
                           "packetCaptureError": [], "message": job.message}))
                for name, job in sorted(latest.items())]

    @staticmethod
    def _running(context: OperationContext, name: str) -> Optional[JobRecord]:
        context.reap_dead_workers()
        for job in context.store.jobs():
            if job.command == PacketCapture.command and job.name == name and not job.finished:
                return job
        return None

    @staticmethod
    def _latest(context: OperationContext, name: str) -> Optional[JobRecord]:
        jobs = [j for j in context.store.jobs()
                if j.command == PacketCapture.command and j.name == name]
        return max(jobs, key=lambda j: j.seq) if jobs else None


def _field_path(path: str) -> str:
    """Where the caller wrote the field: the SAS token is a protected setting."""
    if path == "storageSasToken":
        return "protectedSettings.storageSasToken"
    if path == "packetCapture":
        return "publicSettings.packetCapture"
    return f"publicSettings.packetCapture.{path}"


def _substatus_state(querystatus: Mapping[str, Any]) -> str:
    return SUBSTATUS_STATES.get(str(querystatus.get("packetCaptureStatus")), "transitioning")


def _job_state(job: JobRecord) -> str:
    if job.finished:
        return "error" if job.status == "error" else "success"
    return _substatus_state(job.detail) if job.detail else "transitioning"


def _summary(status: Mapping[str, Any]) -> str:
    where = status.get("uploadedUrl") or status.get("localPath") or "no file"
    text = (f"capture {status.get('name')!r} {status.get('packetCaptureStatus')}"
            f" ({status.get('stopReason') or 'no stop reason'}): "
            f"{status.get('packetsCaptured', 0)} packets, {status.get('bytesWritten', 0)} bytes,"
            f" {status.get('packetsDropped', 0)} dropped; {where}")
    if status.get("errorMessage"):
        text += f"; error: {status['errorMessage']}"
    return text


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:64]


def _capture_codes() -> set[int]:
    """The capture engine's table: the code each CaptureError subclass declares, however deep
    (ALL_ERRORS lists only the parser's; the runtime's 122, 131, 132 are not in it). One that
    declares none (CaptureSettingsError) inherits the base's 1, which is not counted."""
    from capture_engine.errors import CaptureError

    found: set[int] = set()
    todo: list[type[CaptureError]] = list(CaptureError.__subclasses__())
    while todo:
        cls = todo.pop()
        if "code" in vars(cls):
            found.add(cls.code)
        todo += cls.__subclasses__()
    return found
