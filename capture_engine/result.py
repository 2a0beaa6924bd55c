"""The outcome of a capture session and its querystatus shape."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Dict, List, Optional, Tuple

from capture_engine.errors import AGENT_STOPPED

# packetCaptureStatus
NOT_STARTED, RUNNING, STOPPED, ERROR, UNKNOWN = "NotStarted", "Running", "Stopped", "Error", \
    "Unknown"
# stopReason: TimeExceeded is the service's; the others are ours.
TIME_EXCEEDED = "TimeExceeded"              # timeLimitInSeconds / sessionTimeLimitInSeconds
BYTE_LIMIT = "ByteLimitReached"             # the next record would have crossed the byte cap
STOPPED_BY_REQUEST = "StoppedByRequest"     # action=stop, disable, or Ctrl-C in the CLI
PACKET_COUNT = "PacketCountReached"         # CLI -c
INTERFACE_DOWN = "InterfaceDown"            # a capture interface went away or down
DISK_FULL = "DiskFull"                      # what was written is kept
LOCAL_FILE_FAILED = "LocalFileFailed"       # any other write failure; what was written is kept
CAPTURE_FAILED = "CaptureFailed"            # could not start, or the capture source failed
AGENT_STOPPED_REASON = "AgentStopped"       # the worker process died
STOP_REASONS = (TIME_EXCEEDED, BYTE_LIMIT, STOPPED_BY_REQUEST, PACKET_COUNT, INTERFACE_DOWN,
                DISK_FULL, LOCAL_FILE_FAILED, CAPTURE_FAILED, AGENT_STOPPED_REASON)


def iso(moment: Optional[datetime]) -> Optional[str]:
    if moment is None:
        return None
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"


@dataclass(frozen=True)
class CaptureResult:
    """A snapshot of a session: while it runs (progress) and when it has ended."""

    name: str
    status: str = NOT_STARTED
    stop_reason: Optional[str] = None
    errors: Tuple[str, ...] = ()
    error_code: Optional[int] = None
    error_message: Optional[str] = None
    capture_start_time: Optional[datetime] = None
    capture_stop_time: Optional[datetime] = None
    packets_captured: int = 0
    packets_dropped: int = 0
    bytes_written: int = 0
    local_files: Tuple[str, ...] = ()
    uploaded_urls: Tuple[str, ...] = ()
    upload_bytes: int = 0
    upload_total: int = 0
    backend: Optional[str] = None
    interfaces: Tuple[str, ...] = ()
    extra: Dict[str, object] = field(default_factory=dict)

    @property
    def local_path(self) -> Optional[str]:
        return self.local_files[-1] if self.local_files else None

    @property
    def ok(self) -> bool:
        return self.status != ERROR

    def querystatus(self) -> Dict[str, object]:
        """The service's querystatus fields plus our counters and paths (never a SAS)."""
        status: Dict[str, object] = {
            "name": self.name,
            "packetCaptureStatus": self.status,
            "packetCaptureError": list(self.errors),
            "captureStartTime": iso(self.capture_start_time),
        }
        if self.stop_reason:
            status["stopReason"] = self.stop_reason
        status.update({
            "captureStopTime": iso(self.capture_stop_time),
            "packetsCaptured": self.packets_captured,
            "packetsDropped": self.packets_dropped,
            "bytesWritten": self.bytes_written,
            "localPath": self.local_path,
            "localFiles": list(self.local_files),
            "uploadedUrl": self.uploaded_urls[-1] if self.uploaded_urls else None,
            "uploadedUrls": list(self.uploaded_urls),
            "backend": self.backend,
            "interfaces": list(self.interfaces),
        })
        status.update(self.extra)
        if self.upload_total:
            status["uploadProgress"] = {"bytes": self.upload_bytes, "total": self.upload_total}
        if self.error_code is not None:
            status["errorCode"] = self.error_code
            status["errorMessage"] = self.error_message
        return status


def agent_stopped(name: str, capture_start_time: Optional[datetime] = None,
                  local_files: List[str] = ()) -> CaptureResult:
    """The status of a session whose worker died: Error / AgentStopped."""
    return CaptureResult(
        name=name, status=ERROR, stop_reason=AGENT_STOPPED_REASON, errors=(AGENT_STOPPED,),
        error_code=1, error_message="the capture worker stopped unexpectedly",
        capture_start_time=capture_start_time, local_files=tuple(local_files))
