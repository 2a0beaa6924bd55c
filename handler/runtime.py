"""The composition root's services: settings, records, workers, status file and status blob."""
from __future__ import annotations

import json
import logging
import os
import uuid
from typing import Dict, List, Mapping, Optional

from handler import jobs
from handler.environment import HandlerEnvironment
from handler.errors import HandlerError, StatusBlobError
from handler.events import EventWriter
from handler.operations.base import Operation, Outcome
from handler.settings import HandlerSettings, decrypt, parse_settings
from handler.settings_file import RawSettings, read_settings
from handler.state import JobRecord, OperationRecord, StateStore
from handler.status import StatusReport, Substatus, render, write_status
from plumbing.blobstore import BlobError, BlobErrorKind, BlobStore
from plumbing.clock import SystemClock, utc_timestamp
from plumbing.redact import Redactor

# What is remembered: enough for status and idempotency, never an ever-growing folder.
KEEP_FINISHED_JOBS = 50
KEEP_OPERATIONS = 100
STATUS_BLOB_CODES = {BlobErrorKind.FORBIDDEN: 42, BlobErrorKind.EXPIRED: 43}


class MemoryLog(logging.Handler):
    """Keeps this process's (already redacted) log lines for the logs blob."""

    def __init__(self, formatter: logging.Formatter, limit: int = 10 * 1024 * 1024) -> None:
        super().__init__()
        self.setFormatter(formatter)
        self.lines: List[str] = []
        self._size, self._limit = 0, limit

    def emit(self, record: logging.LogRecord) -> None:
        line = self.format(record)
        self.lines.append(line)
        self._size += len(line) + 1
        while self._size > self._limit and self.lines:  # keep the newest, like the original
            self._size -= len(self.lines.pop(0)) + 1

    def text(self) -> str:
        return "\n".join(self.lines) + ("\n" if self.lines else "")


class Runtime:
    """Everything an operation may use; built once per process by handler.main."""

    def __init__(self, env: HandlerEnvironment, registry: Mapping[str, Operation],
                 redactor: Redactor, blob_store: BlobStore, logger: logging.Logger,
                 events: EventWriter, memory_log: MemoryLog,
                 environ: Mapping[str, str] = os.environ, clock: SystemClock = SystemClock()):
        self.env = env
        self.registry = registry
        self.redactor = redactor
        self.blob_store = blob_store
        self.log = logger
        self.events = events
        self.memory_log = memory_log
        self.environ = environ
        self.clock = clock
        self.store = StateStore(env.state_dir, env.mrseq_file, redactor.redact)
        self._settings: Dict[int, HandlerSettings] = {}
        self.manifest: Mapping[str, object] = {}

    # -- settings -----------------------------------------------------------------------
    def raw_settings(self, seq: int) -> RawSettings:
        return read_settings(self.env.config_folder, seq)

    def settings(self, seq: int, raw: Optional[RawSettings] = None) -> HandlerSettings:
        """Decrypt and parse one sequence number's settings (in memory, cached)."""
        if seq not in self._settings:
            raw = raw or self.raw_settings(seq)
            protected = decrypt(raw, self.env, self.redactor)
            parsers = {name: op.parse for name, op in self.registry.items()}
            self._settings[seq] = parse_settings(raw, protected, parsers)
        return self._settings[seq]

    def cached_settings(self, seq: int) -> Optional[HandlerSettings]:
        try:
            return self.settings(seq)
        except HandlerError:
            return None

    # -- jobs ---------------------------------------------------------------------------
    def start_job(self, seq: int, command: str, name: str, job_id: str = "") -> JobRecord:
        """Record a job and start its detached worker. The caller holds the state lock."""
        job = JobRecord(job_id=job_id or f"{command}-{seq}-{uuid.uuid4().hex[:8]}",
                        command=command, seq=seq, name=name,
                        started=utc_timestamp(self.clock.now()),
                        updated=utc_timestamp(self.clock.now()))
        self._prune()
        self.store.save_job(job)
        pid = jobs.spawn_worker(job.job_id, self.env.extension_dir)
        created = jobs.process_create_time(pid) or 0.0
        job = self.store.update_job(job.job_id, pid=pid, create_time=created,
                                    state="running" if created else "died")
        self.log.info("started worker %s (pid %d) for %s", job.job_id, pid, name)
        return job

    def _prune(self) -> None:
        for job_id in self.store.prune(KEEP_FINISHED_JOBS, KEEP_OPERATIONS):
            (self.env.log_folder / "jobs" / f"{job_id}.log").unlink(missing_ok=True)

    def job_substatus(self, job_ids: List[str]) -> List[Substatus]:
        entries = []
        for job_id in job_ids:
            job = self.store.job(job_id)
            if job is not None:
                message = json.dumps(job.detail) if job.detail else job.message
                entries.append(Substatus(job.name, job.status, job.code, message))
        return entries

    def finish_job(self, job_id: str, outcome: Outcome, state: str = "finished") -> JobRecord:
        return self.store.update_job(job_id, state=state, status=outcome.status,
                                     code=outcome.code, message=outcome.message,
                                     detail=outcome.detail or self.store.job(job_id).detail,
                                     updated=utc_timestamp(self.clock.now()))

    def reap_dead_workers(self) -> None:
        def mark(job: JobRecord) -> JobRecord:
            op = self.registry.get(job.command)
            outcome = op.on_worker_death(job, self) if op else Outcome("error", 50, "worker died")
            self.log.error("worker %s (pid %d) died: %s", job.job_id, job.pid, outcome.message)
            return self.finish_job(job.job_id, outcome, state="died")
        jobs.reap_dead(self.store, mark)

    # -- status -------------------------------------------------------------------------
    def conclude(self, record: OperationRecord) -> OperationRecord:
        """A transitioning record whose jobs have all finished takes their outcome."""
        if record.terminal or not record.jobs:
            return record
        finished = [self.store.job(j) for j in record.jobs]
        if any(job is None or not job.finished for job in finished):
            return record
        failed = [job for job in finished if job.status == "error"]
        last = failed[0] if failed else finished[-1]
        record.status, record.code, record.message = (
            ("error" if failed else "success"), last.code, last.message)
        self.store.save_operation(record)
        return record

    def refresh_status(self, seq: Optional[int] = None) -> Optional[OperationRecord]:
        """Re-render the status file (and blob) of `seq`, default the latest. Lock held."""
        self.reap_dead_workers()
        seq = self.store.last_seq() if seq is None else seq
        record = self.store.operation(seq) if seq is not None else None
        if record is None:
            return None
        op = self.registry.get(record.command)
        record = op.settle(record, self) if op else self.conclude(record)
        substatus = op.substatus(record, self) if op else []
        settings = self.cached_settings(seq) if record.command else None
        if settings is not None and settings.status_blob_uri:
            self._upload_status_blob(record, op, substatus, settings.status_blob_uri)
        self._write_local(record, op, substatus)
        return record

    def _report(self, record: OperationRecord, substatus: List[Substatus]) -> StatusReport:
        extra = []
        for key, label in (("statusBlobError", "StatusBlobUpload"),
                           ("logsBlobError", "LogsBlobUpload")):
            failure = record.detail.get(key)
            if failure:
                extra.append(Substatus(label, "warning" if key == "logsBlobError" else "error",
                                       failure["code"], failure["message"]))
        failure = record.detail.get("statusBlobError")
        status, code, message = record.status, record.code, record.message
        if failure and record.terminal:
            status, code = "error", failure["code"]
            message = f"{message} | status blob not written: {failure['message']}"
        return StatusReport(self.env.name or "handler", record.command or "enable", status,
                            code, self.redactor(message),
                            [Substatus(s.name, s.status, s.code, self.redactor(s.message))
                             for s in substatus + extra])

    def _write_local(self, record: OperationRecord, op: Optional[Operation],
                     substatus: List[Substatus]) -> None:
        extra = op.status_extra(record, self) if op is not None else {}
        write_status(self.env.status_folder, record.seq, self._report(record, substatus),
                     self.clock.now(), extra)

    def _upload_status_blob(self, record: OperationRecord, op: Optional[Operation],
                            substatus: List[Substatus], uri: str) -> None:
        document = render(self._report(record, substatus), self.clock.now())
        if op is not None:
            document = op.status_blob_document(document, record, self) or document
        data = self.redactor(json.dumps(document, separators=(",", ":"))).encode("utf-8")
        try:
            self.blob_store.put_bytes(uri, data, content_type="application/json")
            record.detail.pop("statusBlobError", None)
        except BlobError as exc:
            code = STATUS_BLOB_CODES.get(exc.kind, StatusBlobError.code)
            self.log.error("status blob upload failed after %d attempt(s): %s", exc.attempts, exc)
            record.detail["statusBlobError"] = {"code": code, "kind": exc.kind.value,
                                                "message": self.redactor(str(exc))}
        self.store.save_operation(record)

    def upload_log(self, settings: Optional[HandlerSettings], record: OperationRecord) -> None:
        """Send this process's log lines to logsBlobUri; a failure is recorded, not dropped."""
        if settings is None or not settings.logs_blob_uri:
            return
        try:
            self.blob_store.put_bytes(settings.logs_blob_uri,
                                      self.redactor(self.memory_log.text()).encode("utf-8"),
                                      content_type="text/plain; charset=utf-8")
            record.detail.pop("logsBlobError", None)
        except BlobError as exc:
            self.log.error("logs blob upload failed: %s", exc)
            record.detail["logsBlobError"] = {"code": STATUS_BLOB_CODES.get(exc.kind, 41),
                                              "message": self.redactor(str(exc))}
        self.store.save_operation(record)
