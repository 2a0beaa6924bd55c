"""The outcome of a run: consistency, code, and the status documents for the status blob."""
from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Optional

from plumbing.clock import utc_timestamp
from snapshot.disks import DiskSnapshot
from snapshot.errors import Code

EXTENSION_NAME = "Microsoft.Azure.RecoveryServices.VMSnapshotLinux"


class Consistency(str, enum.Enum):
    """Recovery point consistency, self-describing; `.number` is the service's value."""

    NONE = "none"
    FILE_SYSTEM = "fileSystemConsistent"
    APPLICATION = "applicationConsistent"
    CRASH = "crashConsistent"

    @property
    def number(self) -> int:
        return {"none": 0, "fileSystemConsistent": 1, "applicationConsistent": 2,
                "crashConsistent": 3}[self.value]

    @property
    def recovery_point_type(self) -> str:
        return {"none": "None", "fileSystemConsistent": "FileSystemConsistent",
                "applicationConsistent": "AppConsistent",
                "crashConsistent": "CrashConsistent"}[self.value]


@dataclass(frozen=True)
class StorageDetails:
    partition_count: int = 0
    total_used_bytes: int = 0
    size_computation_failed: bool = False


@dataclass(frozen=True)
class SnapshotResult:
    """What the worker reports: never raised, always returned by run_snapshot."""

    status: str  # 'success' or 'error'
    code: int
    message: str
    consistency: Consistency = Consistency.NONE
    task_id: str = ""
    start_ticks: str = ""
    disks: tuple[DiskSnapshot, ...] = ()
    storage: StorageDetails = StorageDetails()
    telemetry: tuple[tuple[str, str], ...] = ()
    freeze_window: Optional[float] = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def consistency_number(self) -> int:
        return self.consistency.number

    @property
    def ok(self) -> bool:
        return self.status == "success"

    def status_blob_document(self, now: datetime, operation: str = "Enable",
                             name: str = EXTENSION_NAME) -> list[dict[str, Any]]:
        """The JSON array written to statusBlobUri (and, alike, the local status file)."""
        message = {"messageStr": self.message, "snapshotConsistency": self.consistency_number,
                   "jobMessage": self.message if not self.ok else "",
                   "isSizeComputationFailed": self.storage.size_computation_failed}
        status = _status_core(self.status, self.code, json.dumps(message), name, operation,
                              self.task_id, self.start_ticks)
        status.update({
            "snapshotConsistency": self.consistency.value,
            "snapshotInfo": [d.info() for d in self.disks],
            "storageDetails": {"partitionCount": self.storage.partition_count,
                               "totalUsedSizeInBytes": self.storage.total_used_bytes},
            "telemetryData": [{"Key": k, "Value": v} for k, v in self.telemetry],
        })
        return [{"version": "1.0", "timestampUTC": utc_timestamp(now), "status": status}]


def transitioning_status_document(task_id: str, start_ticks: str, now: datetime,
                                  operation: str = "Enable",
                                  name: str = EXTENSION_NAME) -> list[dict[str, Any]]:
    """The first status the handler writes, before the worker starts."""
    message = {"messageStr": "snapshot in progress", "snapshotConsistency": 0,
               "jobMessage": "", "isSizeComputationFailed": False}
    status = _status_core("transitioning", Code.TRANSITIONING, json.dumps(message), name,
                          operation, task_id, start_ticks)
    return [{"version": "1.0", "timestampUTC": utc_timestamp(now), "status": status}]


def error_result(code: int, message: str, task_id: str = "",
                 start_ticks: str = "") -> SnapshotResult:
    """A failed result for errors found before or outside a run (bad settings, dead worker)."""
    return SnapshotResult("error", code, message, task_id=task_id, start_ticks=start_ticks)


def _status_core(status: str, code: int, message: str, name: str, operation: str,
                 task_id: str, start_ticks: str) -> dict[str, Any]:
    return {"name": name, "operation": operation, "status": status, "code": str(code),
            "formattedMessage": {"lang": "en-US", "message": message},
            "taskId": task_id, "commandStartTimeUTCTicks": start_ticks}


def watchdog_report_result(report: dict[str, Any], task_id: str = "",
                           start_ticks: str = "") -> SnapshotResult:
    """The failure to report when the watchdog had to thaw for a worker that did not finish."""
    reason = str(report.get("reason", "unknown"))
    thawed = report.get("thawed") or []
    code = Code.FREEZE_TIMEOUT if reason == "timeout" else Code.FREEZE_FAILED
    why = {"died": "the snapshot worker died while filesystems were frozen",
           "timeout": "the freeze timed out"}.get(reason, f"the freeze was interrupted ({reason})")
    return error_result(code, f"{why}; the watchdog thawed {len(thawed)} filesystem(s)",
                        task_id, start_ticks)
