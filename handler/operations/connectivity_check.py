"""commandToExecute=connectivityCheck: run connectivity.run_check in a detached worker."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from handler.errors import (
    CONNECTIVITY_CHECK,
    CONNECTIVITY_CODE_BASE,
    HANDLER,
    SettingsValidationError,
    StatusCode,
)
from handler.operations.base import Operation, Outcome
from handler.operations.context import OperationContext
from handler.settings import HandlerSettings, field
from handler.state import JobRecord, OperationRecord

if TYPE_CHECKING:  # the capability is imported when the operation runs, not with the table
    from connectivity.request import ConnectivityRequest

# Connectivity's own codes (0-29) are reported as 200 + code, so they never read as ours.
SUBSTATUS = "connectivityCheck"


class ConnectivityCheck(Operation["ConnectivityRequest"]):
    command = "connectivityCheck"

    def status_code(self, code: int) -> StatusCode:
        """200 + n is the check's code n; below that, the handler's."""
        return StatusCode(CONNECTIVITY_CHECK if code >= CONNECTIVITY_CODE_BASE else HANDLER,
                          code)

    def parse(self, public: Mapping[str, Any],
              protected: Mapping[str, Any]) -> ConnectivityRequest:
        from connectivity.errors import ConnectivityRequestError
        from connectivity.request import parse_request

        body = field(public, "connectivityCheck")
        if not isinstance(body, dict):
            raise SettingsValidationError([("publicSettings.connectivityCheck",
                                            "required, an object")])
        try:
            return parse_request(body)
        except ConnectivityRequestError as exc:
            raise SettingsValidationError(
                [(f"publicSettings.connectivityCheck.{path}", what) for path, what in exc.problems],
                code=CONNECTIVITY_CODE_BASE + exc.code,
                prefix="invalid connectivityCheck settings") from None

    def enable(self, settings: HandlerSettings[ConnectivityRequest],
               context: OperationContext) -> OperationRecord:
        job = context.start_job(settings.seq, self.command, SUBSTATUS)
        return OperationRecord(settings.seq, self.command, "transitioning", 0,
                               "connectivity check running", jobs=[job.job_id])

    def work(self, settings: HandlerSettings[ConnectivityRequest], job: JobRecord,
             context: OperationContext) -> Outcome:
        from connectivity.check import run_check

        context.log.info("connectivity check %s", job.job_id)
        result = run_check(settings.request, clock=context.clock)
        context.log.info("connectivity check result: %s", result.summary)
        code = CONNECTIVITY_CODE_BASE + result.status_code if result.status_code else 0
        return Outcome("success" if result.succeeded else "error", code, result.summary,
                       detail=result.to_json())
