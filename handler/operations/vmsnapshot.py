"""commandToExecute=snapshot|install (Azure Backup): dedupe, too-late check, detached run."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional

from handler.errors import (
    VMSNAPSHOT,
    CertificateNotFoundError,
    EnvelopeError,
    HandlerError,
    NoRuntimeSettingsError,
    ProtectedSettingsContentError,
    ProtectedSettingsEncodingError,
    SettingsFileError,
    SettingsValidationError,
    StatusBlobError,
    StatusCode,
    UnknownCommandError,
    UnsupportedCipherError,
    WrongCertificateError,
)
from handler.operations.base import Operation, Outcome
from handler.operations.context import OperationContext
from handler.settings import HandlerSettings
from handler.state import JobRecord, OperationRecord
from handler.status import Substatus
from plumbing.blobstore import BlobStore

if TYPE_CHECKING:  # the capability is imported when the operation runs, not with the table
    from snapshot.settings import SnapshotSettings

SUBSTATUS = "VMSnapshot"
# Handler-level failures by the backup service's rows: protected settings that cannot be
# decrypted with the VM's certificate (16), and requests that are malformed (11).
CERTIFICATE_ERRORS = (CertificateNotFoundError, WrongCertificateError, UnsupportedCipherError)
PARAMETER_ERRORS = (SettingsFileError, NoRuntimeSettingsError, SettingsValidationError,
                    UnknownCommandError, ProtectedSettingsEncodingError, EnvelopeError,
                    ProtectedSettingsContentError)
# parse() must give the same answer whenever it runs (the worker and later enables re-parse),
# so the too-late rule, which depends on when the command arrived, is applied in enable().
_PARSE_EPOCH = datetime.min.replace(tzinfo=timezone.utc)


class VmSnapshot(Operation["SnapshotSettings"]):
    def __init__(self, command: str) -> None:
        self.command = command
        self._running = False  # the worker's run_snapshot has begun

    def stop(self) -> None:
        """SIGTERM in the worker (disable): before the run, stop; once it has begun, the run
        turns SIGTERM into its own interrupt (thaw, post-scripts), and what it returns, a
        snapshot taken included, is recorded and reported whatever signal comes after."""
        if not self._running:
            super().stop()

    def parse(self, public: Mapping[str, Any],
              protected: Mapping[str, Any]) -> SnapshotSettings:
        from snapshot.errors import SnapshotSettingsError
        from snapshot.settings import parse_snapshot_settings

        try:
            return parse_snapshot_settings(public, protected, now=_PARSE_EPOCH)
        except SnapshotSettingsError as exc:
            raise SettingsValidationError([("publicSettings/protectedSettings", p)
                                           for p in exc.problems], code=exc.code,
                                          prefix="invalid VMSnapshot settings") from None

    def error_code(self, error: HandlerError) -> int:
        """The backup service reads only its own numbers: a handler-level failure becomes the
        row that means it (the operation's own settings codes pass through)."""
        from snapshot.errors import Code

        if isinstance(error, SettingsValidationError) and \
                error.code != SettingsValidationError.code:
            return error.code  # the snapshot parser's own number (11, 17, 402...)
        for kinds, code in ((CERTIFICATE_ERRORS, Code.CERTIFICATE_NOT_FOUND),
                            (PARAMETER_ERRORS, Code.PARAMETER_ERROR),
                            ((StatusBlobError,), Code.HTTP_FAILURE)):
            if isinstance(error, kinds):
                return code
        return Code.ERROR

    def status_code(self, code: int) -> StatusCode:
        """Every VMSnapshot code is the backup service's, the handler's failures included."""
        return StatusCode(VMSNAPSHOT, code)

    def describe(self, settings: HandlerSettings[SnapshotSettings]) -> dict[str, Any]:
        return {"taskId": settings.request.task_id}

    def enable(self, settings: HandlerSettings[SnapshotSettings],
               context: OperationContext) -> OperationRecord:
        from snapshot.errors import Code, TooLateError
        from snapshot.settings import check_not_too_late

        request, seq = settings.request, settings.seq
        record = OperationRecord(seq, self.command, "transitioning", Code.TRANSITIONING,
                                 f"task {request.task_id}: snapshot running",
                                 substatus_name=SUBSTATUS)
        if request.command == "install":
            record.status, record.code, record.message = "success", Code.SUCCESS, "installed"
            return record
        try:
            check_not_too_late(request, context.clock.now())
        except TooLateError as exc:
            record.status, record.code, record.message = "error", exc.code, exc.message
            return record
        earlier = _earlier_run(request.task_id, seq, context)
        if earlier is None:
            job = context.start_job(seq, self.command, SUBSTATUS)
            record.jobs = [job.job_id]
        elif not earlier.terminal:  # still running for an earlier sequence: follow it
            record.jobs = list(earlier.jobs)
            record.message = f"task {request.task_id}: snapshot running (sequence {earlier.seq})"
        elif earlier.status == "success":
            record.status, record.code = "success", Code.ALREADY_PROCESSED
            record.message = (f"task {request.task_id} already processed by sequence "
                              f"{earlier.seq}: {earlier.message}; not run again")
        else:  # the task ended in an error: say so again, never "already processed"
            record.status, record.code = "error", earlier.code
            record.message = (f"task {request.task_id} already ran (sequence {earlier.seq}) "
                              f"and failed: {earlier.message}")
        return record

    def work(self, settings: HandlerSettings[SnapshotSettings], job: JobRecord,
             context: OperationContext) -> Outcome:
        from snapshot.config import load_local_config
        from snapshot.errors import SnapshotError
        from snapshot.log import BufferedLog
        from snapshot.runner import run_snapshot

        try:
            config = replace(load_local_config(context.environ),
                             watchdog_report_path=str(_watchdog_report(job, context)))
        except SnapshotError as exc:  # vmbackup.conf malformed: its own number, not code 1
            return Outcome("error", exc.code, exc.message)
        # The per-request timeout is what bounds a hanging snapshot while frozen.
        store = BlobStore(policy=context.blob_store.policy, timeout=config.snapshot_timeout,
                          redactor=context.redactor)
        log = BufferedLog(redactor=context.redactor)
        self._running = True
        result = run_snapshot(settings.request, blob_store=store, config=config, log=log,
                              clock=context.clock)
        for line in log.lines():  # written only now: nothing may touch disk during the freeze
            context.log.info("snapshot: %s", line)
        document = result.status_blob_document(context.clock.now())
        return Outcome(result.status, result.code, result.message,
                       detail={"statusBlob": document,
                               "snapshotConsistency": result.consistency.value})

    def on_worker_death(self, job: JobRecord, context: OperationContext) -> Outcome:
        from snapshot.errors import Code
        from snapshot.freeze import read_watchdog_report
        from snapshot.result import watchdog_report_result

        report = read_watchdog_report(str(_watchdog_report(job, context)))
        if report is None:
            return Outcome("error", Code.ERROR, f"snapshot worker {job.pid} died before it "
                                                f"froze anything or reported")
        settings = context.cached_settings(job.seq)
        task, ticks = (settings.request.task_id, settings.request.start_ticks) if settings \
            else ("", "")
        result = watchdog_report_result(report, task, ticks)
        return Outcome("error", result.code, result.message,
                       detail={"statusBlob": result.status_blob_document(context.clock.now())})

    def substatus(self, record: OperationRecord, context: OperationContext) -> list[Substatus]:
        return [Substatus(SUBSTATUS, record.status, self.status_code(record.code),
                          _message_json(self._document(record, context)))]

    def status_extra(self, record: OperationRecord, context: OperationContext) -> dict[str, Any]:
        status: dict[str, Any] = self._document(record, context)[0]["status"]
        return {k: v for k, v in status.items() if k not in ("code", "status")}

    def status_blob_document(self, document: list[dict[str, Any]], record: OperationRecord,
                             context: OperationContext) -> list[dict[str, Any]]:
        return self._document(record, context)

    def _document(self, record: OperationRecord,
                  context: OperationContext) -> list[dict[str, Any]]:
        from snapshot.result import error_result, transitioning_status_document

        settings = context.cached_settings(record.seq)
        task = settings.request.task_id if settings else ""
        ticks = settings.request.start_ticks if settings else ""
        job: Optional[JobRecord] = context.store.job(record.jobs[0]) if record.jobs else None
        if job is not None and job.detail.get("statusBlob"):
            recorded: list[dict[str, Any]] = job.detail["statusBlob"]  # the worker's own
            return recorded
        now = context.clock.now()
        if record.status == "transitioning":
            return transitioning_status_document(task, ticks, now)
        result = error_result(record.code, record.message, task, ticks)
        if record.status == "success":
            result = replace(result, status="success")
        return result.status_blob_document(now)


def _earlier_run(task_id: str, seq: int,
                 context: OperationContext) -> Optional[OperationRecord]:
    """The record of another sequence that ran (or runs) this task; a record written ahead
    by an enable killed before any worker existed did not run it. Lock held."""
    for other in sorted(context.store.operations(), key=lambda r: -r.seq):
        if other.seq == seq or other.command != "snapshot" or \
                other.detail.get("taskId") != task_id:
            continue
        if not other.jobs:  # an enable killed after starting its worker, before noting it
            other.jobs = [j.job_id for j in context.store.jobs()
                          if j.seq == other.seq and j.command == "snapshot"
                          and (not j.finished or j.pid > 0)]
        if not other.jobs:  # answered without a worker: a dedupe answer ran nothing itself,
            continue        # and a refusal (too late, no status blob) did not run the task
        other = context.conclude(other)
        started = [context.store.job(j) for j in other.jobs]
        if other.terminal or any(j is not None and not j.finished for j in started):
            return other
    return None


def _watchdog_report(job: JobRecord, context: OperationContext) -> Path:
    folder = context.env.state_dir / "snapshot"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{job.job_id}.watchdog.json"


def _message_json(document: list[dict[str, Any]]) -> str:
    message: str = document[0]["status"]["formattedMessage"]["message"]
    return message
