"""The composition root's services: settings, records, workers, status file and status blob."""
from __future__ import annotations

import json
import logging
import os
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, TypedDict

from handler import jobs
from handler.environment import HandlerEnvironment
from handler.errors import (
    HANDLER,
    HandlerError,
    SettingsFileError,
    StatusBlobError,
    StatusBlobExpiredError,
    StatusBlobForbiddenError,
    StatusCode,
    StatusWriteError,
    WorkerDiedError,
)
from handler.events import EventWriter
from handler.operations.base import Operation, Outcome
from handler.settings import BlobUris, HandlerSettings, blob_uris, decrypt, parse_settings
from handler.settings_file import RawSettings, read_settings
from handler.state import JobRecord, OperationRecord, StateStore
from handler.status import StatusReport, Substatus, render, write_status
from plumbing.blobstore import BlobError, BlobErrorKind, BlobStore
from plumbing.clock import Clock, SystemClock, utc_timestamp
from plumbing.crashpoints import crashpoint
from plumbing.procid import myself
from plumbing.redact import Redactor

# What is remembered: enough for status and idempotency, never an ever-growing folder.
KEEP_FINISHED_JOBS = 50
KEEP_OPERATIONS = 100
PUBLISH_ROUNDS = 3  # a status sent stale by a race is sent again, this many times at most
STATUS_BLOB_CODES = {BlobErrorKind.FORBIDDEN: StatusBlobForbiddenError.code,
                     BlobErrorKind.EXPIRED: StatusBlobExpiredError.code}


class BlobFailure(TypedDict):
    """A status or logs upload that failed, as the operation record keeps it."""

    code: int
    kind: str
    message: str


class MemoryLog(logging.Handler):
    """Keeps this process's (already redacted) log lines for the logs blob."""

    def __init__(self, formatter: logging.Formatter, limit: int = 10 * 1024 * 1024) -> None:
        super().__init__()
        self.setFormatter(formatter)
        self.lines: list[str] = []
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

    def __init__(self, env: HandlerEnvironment, registry: Mapping[str, Operation[Any]],
                 redactor: Redactor, blob_store: BlobStore, logger: logging.Logger,
                 events: EventWriter, memory_log: MemoryLog,
                 environ: Mapping[str, str] = os.environ, clock: Clock = SystemClock()) -> None:
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
        self._settings: dict[int, HandlerSettings[Any]] = {}
        self._uris: dict[int, BlobUris] = {}
        self._digests: dict[int, str] = {}
        self.manifest: Mapping[str, object] = {}
        self.status_write_error: Optional[StatusWriteError] = None  # the last local write's
        # A worker points this at its background publisher: called after each status change.
        self.status_changed: Callable[[], None] = lambda: None

    # -- settings -----------------------------------------------------------------------
    def raw_settings(self, seq: int) -> RawSettings:
        return read_settings(self.env.config_folder, seq)

    def settings(self, seq: int, raw: Optional[RawSettings] = None) -> HandlerSettings[Any]:
        """Decrypt and parse one sequence number's settings (in memory, cached)."""
        if seq not in self._settings:
            raw = raw or self.raw_settings(seq)
            self._digests[seq] = raw.digest
            self._uris[seq] = blob_uris(raw.public or {}, {})
            protected = decrypt(raw, self.env, self.redactor)
            self._uris[seq] = blob_uris(raw.public or {}, protected)
            parsers = {name: op.parse for name, op in self.registry.items()}
            self._settings[seq] = parse_settings(raw, protected, parsers)
        return self._settings[seq]

    def code_for(self, command: object, error: HandlerError) -> int:
        """The number `error` is reported under for `command` (see Operation.error_code)."""
        op = self.registry.get(command) if isinstance(command, str) else None
        return op.error_code(error) if op is not None else error.code

    def status_code(self, command: object, code: int) -> StatusCode:
        """`code` as `command` reports it, with whose table it is from (Operation.status_code);
        the handler's own when the command is unknown."""
        op = self.registry.get(command) if isinstance(command, str) else None
        return op.status_code(code) if op is not None else StatusCode(HANDLER, code)

    def blob_uris(self, seq: int) -> BlobUris:
        """The status and logs blob URIs of `seq`, also when its settings failed validation:
        a refused request is still reported where the caller looks for its status."""
        if seq not in self._uris:
            try:
                self.settings(seq)
            except HandlerError:
                pass
        return self._uris.get(seq, BlobUris(None, None))

    def job_settings(self, job: JobRecord) -> HandlerSettings[Any]:
        """The settings a worker runs with: exactly the file its enable accepted. The agent may
        write a sequence number's file again; a worker never acts on what nobody validated."""
        settings = self.settings(job.seq)
        if job.settings_digest and self._digests.get(job.seq) != job.settings_digest:
            raise SettingsFileError(f"settings file {job.seq}.settings changed after enable "
                                    "accepted it; not acted on (the next enable takes the new "
                                    "settings)")
        return settings

    def cached_settings(self, seq: int) -> Optional[HandlerSettings[Any]]:
        try:
            return self.settings(seq)
        except HandlerError:
            return None

    # -- jobs ---------------------------------------------------------------------------
    def start_job(self, seq: int, command: str, name: str, job_id: str = "") -> JobRecord:
        """Record a job, then start its detached worker. The caller holds the state lock.

        The record is written first and names this enable as its spawner: a kill right after
        leaves a record the next enable settles (worker found by its command line, or died)."""
        me = myself()
        job = JobRecord(job_id=job_id or f"{command}-{seq}-{uuid.uuid4().hex[:8]}",
                        command=command, seq=seq, name=name, spawner_pid=me.pid,
                        settings_digest=self._digests.get(seq, ""),
                        spawner_ticks=me.start, started=utc_timestamp(self.clock.now()),
                        updated=utc_timestamp(self.clock.now()))
        self._prune()
        self.store.save_job(job)
        crashpoint("handler.job.recorded")
        process = jobs.spawn_worker(job.job_id, self.env.extension_dir)
        crashpoint("handler.job.spawned")
        current = self.store.job(job.job_id) or job
        if current.pid == 0 and not current.finished:  # the worker may have registered first
            current = self.store.update_job(job.job_id, pid=process.pid,
                                            start_ticks=process.start, state="running")
        self.log.info("started worker %s (pid %d) for %s", job.job_id, process.pid, name)
        return current

    def register_worker(self, job_id: str) -> Optional[JobRecord]:
        """The worker records itself (the enable that started it may have been killed before
        it could); None when the job is unknown or already settled. The caller holds the lock."""
        job = self.store.job(job_id)
        if job is None or job.finished:
            return None
        me = myself()
        if (job.pid, job.start_ticks) != (me.pid, me.start):
            job = self.store.update_job(job_id, pid=me.pid, start_ticks=me.start,
                                        state="running")
        return job

    def _prune(self) -> None:
        for job_id in self.store.prune(KEEP_FINISHED_JOBS, KEEP_OPERATIONS):
            (self.env.log_folder / "jobs" / f"{job_id}.log").unlink(missing_ok=True)

    def job_substatus(self, job_ids: list[str]) -> list[Substatus]:
        entries = []
        for job_id in job_ids:
            job = self.store.job(job_id)
            if job is not None:
                message = json.dumps(job.detail) if job.detail else job.message
                entries.append(Substatus(job.name, job.status,
                                         self.status_code(job.command, job.code), message))
        return entries

    def finish_job(self, job_id: str, outcome: Outcome, state: str = "finished") -> JobRecord:
        current = self.store.job(job_id)
        if current is None:
            raise KeyError(job_id)
        return self.store.update_job(job_id, state=state, status=outcome.status,
                                     code=outcome.code, message=outcome.message,
                                     detail=outcome.detail or current.detail,
                                     updated=utc_timestamp(self.clock.now()))

    def reap_dead_workers(self) -> None:
        def mark(job: JobRecord) -> JobRecord:
            op = self.registry.get(job.command)
            outcome = op.on_worker_death(job, self) if op else Outcome(
                "error", WorkerDiedError.code, "worker died")
            self.log.error("worker %s (pid %d) died: %s", job.job_id, job.pid, outcome.message)
            return self.finish_job(job.job_id, outcome, state="died")
        jobs.reap_dead(self.store, mark)

    # -- status -------------------------------------------------------------------------
    def conclude(self, record: OperationRecord) -> OperationRecord:
        """A transitioning record whose jobs have all finished takes their outcome."""
        if record.terminal or not record.jobs:
            return record
        known = [self.store.job(j) for j in record.jobs]
        finished = [job for job in known if job is not None and job.finished]
        if len(finished) != len(known):
            return record
        failed = [job for job in finished if job.status == "error"]
        last = failed[0] if failed else finished[-1]
        record.status, record.code, record.message = (
            ("error" if failed else "success"), last.code, last.message)
        self.store.save_operation(record)
        return record

    def render_status(self, seq: Optional[int] = None,
                      write_local: bool = True) -> Optional[StatusDraft]:
        """Settle `seq` (default: the latest) and write its local status file; return what
        its blobs should receive. Local work only: the caller holds the state lock."""
        self.reap_dead_workers()
        seq = self.store.last_seq() if seq is None else seq
        record = self.store.operation(seq) if seq is not None else None
        if record is None:
            return None
        op = self.registry.get(record.command)
        record = op.settle(record, self) if op else self.conclude(record)
        substatus = op.substatus(record, self) if op else []
        if write_local:
            self._write_local(record, op, substatus)
        uris = self.blob_uris(record.seq)
        status_post = logs_post = None
        if uris.status:
            document = render(self._report(record, substatus), self.clock.now())
            if op is not None:
                document = op.status_blob_document(document, record, self) or document
            status_post = BlobPost(uris.status, self.redactor(
                json.dumps(document, separators=(",", ":"))).encode("utf-8"),
                "application/json")
        if uris.logs:
            logs_post = BlobPost(uris.logs,
                                 self.redactor(self.memory_log.text()).encode("utf-8"),
                                 "text/plain; charset=utf-8")
        return StatusDraft(record, status_post, logs_post)

    def refresh_local(self, seq: Optional[int] = None) -> Optional[OperationRecord]:
        """Re-render the local status file only. The caller holds the state lock."""
        draft = self.render_status(seq)
        return draft.record if draft is not None else None

    def publish(self, seq: Optional[int] = None, with_log: bool = False,
                deadline: Optional[float] = None,
                blob_first: bool = False) -> Optional[OperationRecord]:
        """Render the status of `seq`, send it (and the log) to its blobs, record how that
        went. The lock is held to read and write records only, never across an upload: the
        caller must not hold it. `deadline` (monotonic) bounds every upload, retries included.
        `blob_first`: the local file changes only after the blob was tried, so a terminal
        local status never shows before the blob has it.

        Another process may publish the same blob meanwhile (a worker finishing while the agent
        re-runs enable): when the state changed while ours was in flight, ours may have landed
        last with stale content, so the newer state is sent again."""
        record: Optional[OperationRecord] = None
        for _ in range(PUBLISH_ROUNDS):
            with self.store.lock():
                draft = self.render_status(seq, write_local=not blob_first)
            if draft is None:
                return record
            seq = draft.record.seq
            failures = self._send(draft, with_log, deadline)
            with self.store.lock():
                record = self._record_sends(draft.record, failures, blob_first)
                newer = self.render_status(seq, write_local=False)
            stale = (newer is not None and draft.status_post is not None
                     and (newer.record.status, newer.record.code)
                     != (draft.record.status, draft.record.code))
            if not stale:
                return record
            with_log = False  # the log went once; only the status may be behind
        return record

    def _send(self, draft: StatusDraft, with_log: bool,
              deadline: Optional[float]) -> dict[str, Optional[BlobFailure]]:
        failures: dict[str, Optional[BlobFailure]] = {}
        command = draft.record.command
        if draft.status_post is not None:
            failures["statusBlobError"] = self._post(draft.status_post, "status", command,
                                                     deadline)
        if with_log and draft.logs_post is not None:
            failures["logsBlobError"] = self._post(draft.logs_post, "logs", command, deadline)
        return failures

    def _record_sends(self, sent: OperationRecord, failures: dict[str, Optional[BlobFailure]],
                      blob_first: bool) -> OperationRecord:
        """Note each upload's failure (or its absence) on the record. Lock held."""
        record = self.store.operation(sent.seq) or sent
        before = dict(record.detail)
        for key, failure in failures.items():
            if failure is None:
                record.detail.pop(key, None)
            else:
                record.detail[key] = failure
        if record.detail != before:
            self.store.save_operation(record)
        if record.detail != before or blob_first:
            record = self.refresh_local(record.seq) or record
        return record

    def _post(self, post: BlobPost, what: str, command: str,
              deadline: Optional[float]) -> Optional[BlobFailure]:
        """One upload outside the lock; the failure as it is recorded, or None."""
        crashpoint(f"handler.blob.{what}")
        try:
            # `deadline` is an instant of self.clock (the commands take it from there)
            self.blob_store.until(deadline, self.clock.monotonic).put_bytes(
                post.uri, post.data, post.content_type)
            return None
        except BlobError as exc:
            code = self.code_for(command, StatusBlobError(
                str(exc), code=STATUS_BLOB_CODES.get(exc.kind, StatusBlobError.code)))
            self.log.error("%s blob upload failed after %d attempt(s): %s", what, exc.attempts,
                           exc)
            return {"code": code, "kind": exc.kind.value, "message": self.redactor(str(exc))}

    def _report(self, record: OperationRecord, substatus: list[Substatus]) -> StatusReport:
        extra = []
        for key, label in (("statusBlobError", "StatusBlobUpload"),
                           ("logsBlobError", "LogsBlobUpload")):
            failure: Optional[BlobFailure] = record.detail.get(key)
            if failure:
                extra.append(Substatus(label, "warning" if key == "logsBlobError" else "error",
                                       self.status_code(record.command, failure["code"]),
                                       failure["message"]))
        failure = record.detail.get("statusBlobError")
        status, code, message = record.status, record.code, record.message
        if failure and record.terminal:
            status, code = "error", failure["code"]
            message = f"{message} | status blob not written: {failure['message']}"
        return StatusReport(self.env.name or "handler", record.command or "enable", status,
                            self.status_code(record.command, code), self.redactor(message),
                            [Substatus(s.name, s.status, s.code, self.redactor(s.message))
                             for s in substatus + extra])

    def _write_local(self, record: OperationRecord, op: Optional[Operation[Any]],
                     substatus: list[Substatus]) -> None:
        """The agent's file. A folder that refuses it (full, read-only) is logged and does not
        stop the status blob, which may be all the caller reads."""
        extra = op.status_extra(record, self) if op is not None else {}
        try:
            write_status(self.env.status_folder, record.seq, self._report(record, substatus),
                         self.clock.now(), extra)
            self.status_write_error = None
        except StatusWriteError as exc:
            self.status_write_error = exc  # the command still fails with it, after the blob
            self.log.error("%s", exc)


@dataclass(frozen=True)
class BlobPost:
    """One blob write prepared under the lock and sent outside it."""

    uri: str
    data: bytes
    content_type: str


@dataclass(frozen=True)
class StatusDraft:
    """A sequence number's settled record and what its status and logs blobs should get."""

    record: OperationRecord
    status_post: Optional[BlobPost]
    logs_post: Optional[BlobPost]
