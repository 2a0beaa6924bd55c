"""What an operation provides to the handler: parse, enable, work in a worker, report."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, Mapping, Optional, TypeVar

from handler.errors import HANDLER, HandlerError, StatusCode, WorkerDiedError
from handler.operations.context import OperationContext
from handler.settings import HandlerSettings
from handler.state import JobRecord, OperationRecord
from handler.status import Substatus

# The typed request an operation's parse() makes of its settings, and its other methods get.
Request = TypeVar("Request")


@dataclass(frozen=True)
class Outcome:
    """How an operation (or one worker job) ended or stands now."""

    status: str  # transitioning | success | error | warning
    code: int
    message: str
    detail: dict[str, Any] = field(default_factory=dict)


class OperationStopped(Exception):
    """Raised in a worker's main thread when the agent disables the extension."""


class Operation(Generic[Request]):
    """Base for the operations; subclasses override what they need."""

    command = ""

    def parse(self, public: Mapping[str, Any], protected: Mapping[str, Any]) -> Request:
        """Validate this command's settings into a typed request (SettingsValidationError)."""
        raise NotImplementedError

    def describe(self, settings: HandlerSettings[Request]) -> dict[str, Any]:
        """What the operation record notes before anything is done (e.g. the taskId), so an
        enable killed mid-way leaves enough to recognise the intent."""
        return {}

    def error_code(self, error: HandlerError) -> int:
        """The number a handler-level failure is reported under for this operation (its
        caller may define the numbers: VMSnapshot reports only the backup service's)."""
        return error.code

    def status_code(self, code: int) -> StatusCode:
        """Whose table `code`, as this operation reports it, is from (by default the
        handler's: an operation whose capability has codes of its own says which)."""
        return StatusCode(HANDLER, code)

    def starts_work(self, settings: HandlerSettings[Request]) -> bool:
        """Whether enable starts new work, which waits for a writable status blob (otherwise
        nobody would see its result); stopping or deleting goes ahead regardless."""
        return True

    def enable(self, settings: HandlerSettings[Request],
               context: OperationContext) -> OperationRecord:
        """Act on new settings within the agent's 300 s: finish, or start worker jobs."""
        raise NotImplementedError

    def work(self, settings: HandlerSettings[Request], job: JobRecord,
             context: OperationContext) -> Outcome:
        """The long part, in a detached worker process."""
        raise NotImplementedError

    def settle(self, record: OperationRecord, context: OperationContext) -> OperationRecord:
        """Decide the sequence's top-level state from its jobs (default: all must finish)."""
        return context.conclude(record)

    def substatus(self, record: OperationRecord, context: OperationContext) -> list[Substatus]:
        """Substatus entries for this sequence number's status file."""
        return context.job_substatus(record.jobs)

    def status_blob_document(self, document: list[dict[str, Any]], record: OperationRecord,
                             context: OperationContext) -> Optional[list[dict[str, Any]]]:
        """What goes to statusBlobUri; by default the status file itself."""
        return document

    def stop(self) -> None:
        """Called from the worker's SIGTERM handler (disable): by default, unwind the work."""
        raise OperationStopped("stopped by disable before it completed")

    def status_extra(self, record: OperationRecord, context: OperationContext) -> dict[str, Any]:
        """Keys added to the local status object beside the agent's own (the agent ignores
        them); VMSnapshot puts the backup service's fields here."""
        return {}

    def on_worker_death(self, job: JobRecord, context: OperationContext) -> Outcome:
        died = WorkerDiedError(f"worker {job.pid} for {job.name} ended without a result "
                               f"(killed or crashed); the operation did not complete")
        return Outcome("error", self.error_code(died), died.message)
