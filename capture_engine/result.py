"""The outcome of a capture session and its querystatus shape."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Optional, Sequence

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
# The agent cuts a substatus message at 10 KiB and refuses a status file over 128 KiB: the
# querystatus holds counts and the first and last file, never lists that grow, and is cut to
# STATUS_BYTES by shortening its longest texts.
STATUS_BYTES = 4096
TEXT_CHARS, MESSAGE_CHARS, NOTE_CHARS = 512, 1024, 200
INTERFACES_SHOWN = 16
SHORTENED = ("errorMessage", "localPath", "firstLocalFile", "requestedLocalPath",
             "uploadedUrl", "firstUploadedUrl")


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
    errors: tuple[str, ...] = ()
    error_code: Optional[int] = None
    error_message: Optional[str] = None
    capture_start_time: Optional[datetime] = None
    capture_stop_time: Optional[datetime] = None
    packets_captured: int = 0
    packets_dropped: int = 0
    bytes_written: int = 0
    local_files: tuple[str, ...] = ()
    uploaded_urls: tuple[str, ...] = ()
    upload_bytes: int = 0
    upload_total: int = 0
    backend: Optional[str] = None
    interfaces: tuple[str, ...] = ()
    requested_local_path: Optional[str] = None  # when that name was taken: never overwritten
    notes: tuple[str, ...] = ()                  # e.g. a VF that went away and came back
    uploaded_count: Optional[int] = None         # streamed: files uploaded (urls: first, last)
    stream: Optional[dict[str, object]] = None   # streamed: each local file's upload state
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def local_path(self) -> Optional[str]:
        return self.local_files[-1] if self.local_files else None

    @property
    def ok(self) -> bool:
        return self.status != ERROR

    def querystatus(self) -> dict[str, object]:
        """The service's querystatus fields plus our counters and paths (never a SAS), at
        most STATUS_BYTES of JSON whatever the number of files; error fields always there."""
        status: dict[str, object] = {
            "name": self.name,
            "packetCaptureStatus": self.status,
            "packetCaptureError": list(self.errors),
            "stopReason": self.stop_reason,
            "captureStartTime": iso(self.capture_start_time),
            "captureStopTime": iso(self.capture_stop_time),
            "packetsCaptured": self.packets_captured,
            "packetsDropped": self.packets_dropped,
            "bytesWritten": self.bytes_written,
            "localPath": _cut(self.local_path, TEXT_CHARS),
            "localFileCount": len(self.local_files),
            "firstLocalFile": _cut(_first(self.local_files), TEXT_CHARS),
            "uploadedUrl": _cut(self.uploaded_urls[-1] if self.uploaded_urls else None,
                                TEXT_CHARS),
            "uploadedCount": len(self.uploaded_urls) if self.uploaded_count is None
            else self.uploaded_count,
            "firstUploadedUrl": _cut(_first(self.uploaded_urls), TEXT_CHARS),
            "backend": self.backend,
            "interfaces": list(self.interfaces[:INTERFACES_SHOWN]),
            "interfaceCount": len(self.interfaces),
        }
        if self.requested_local_path:
            status["requestedLocalPath"] = _cut(self.requested_local_path, TEXT_CHARS)
        if self.notes:
            status["notes"] = [_cut(note, NOTE_CHARS) for note in self.notes[-5:]]
        status.update(self.extra)
        if self.stream is not None:
            status["streaming"] = self.stream
        if self.upload_total:
            status["uploadProgress"] = {"bytes": self.upload_bytes, "total": self.upload_total}
        status["errorCode"] = self.error_code
        status["errorMessage"] = _cut(self.error_message, MESSAGE_CHARS)
        return _fit_stream(_fit(status))


def _first(items: Sequence[str]) -> Optional[str]:
    return items[0] if items else None


def _cut(text: Optional[str], limit: int) -> Optional[str]:
    """At most `limit` characters, keeping the start and the end (a file name, a path)."""
    if text is None or len(text) <= limit:
        return text
    keep = max(limit - 5, 2)
    return text[:keep - keep // 2] + " ... " + text[len(text) - keep // 2:]


def _fit(status: dict[str, object]) -> dict[str, object]:
    """Halve the longest text until the JSON fits STATUS_BYTES (escaped non-ASCII counts)."""
    for _ in range(64):
        size = len(json.dumps(status))
        texts = [key for key in SHORTENED if isinstance(status.get(key), str)]
        if size <= STATUS_BYTES or not texts:
            break
        longest = max(texts, key=lambda key: len(json.dumps(status[key])))
        status[longest] = _cut(str(status[longest]), len(str(status[longest])) // 2)
    return status


def _fit_stream(status: dict[str, object]) -> dict[str, object]:
    """Still over STATUS_BYTES: show fewer of the streamed files (the newest stay)."""
    stream = status.get("streaming")
    if not isinstance(stream, dict) or not isinstance(stream.get("files"), list):
        return status
    stream = status["streaming"] = {**stream, "files": list(stream["files"])}
    while len(json.dumps(status)) > STATUS_BYTES and stream["files"]:
        del stream["files"][0]
    return status


def agent_stopped(name: str, capture_start_time: Optional[datetime] = None,
                  local_files: Sequence[str] = ()) -> CaptureResult:
    """The status of a session whose worker died: Error / AgentStopped."""
    return CaptureResult(
        name=name, status=ERROR, stop_reason=AGENT_STOPPED_REASON, errors=(AGENT_STOPPED,),
        error_code=1, error_message="the capture worker stopped unexpectedly",
        capture_start_time=capture_start_time, local_files=tuple(local_files))
