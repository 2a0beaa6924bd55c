"""Telemetry events for the agent: JSON files in eventsFolder within the agent's limits."""
from __future__ import annotations

import json
import os
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from plumbing.files import write_atomic
from plumbing.redact import Redactor

MAX_MESSAGE_BYTES = 3 * 1024
MAX_EVENT_BYTES = 6 * 1024
MAX_PENDING_FILES = 200  # the agent deletes files it collected; never fill its folder


class EventWriter:
    """Writes one event per file, truncated to the agent's message and event limits."""

    def __init__(self, folder: Optional[Path], version: str, redactor: Redactor) -> None:
        self.folder = folder
        self.version = version
        self._redact = redactor

    def emit(self, task: str, message: str, level: str = "Informational",
             operation_id: str = "") -> Optional[Path]:
        if self.folder is None:
            return None
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            if sum(1 for _ in self.folder.glob("*.json")) >= MAX_PENDING_FILES:
                return None
            event = {
                "Version": self.version,
                "Timestamp": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "TaskName": task[:128], "EventLevel": level,
                "Message": _truncate(self._redact(message), MAX_MESSAGE_BYTES),
                "EventPid": str(os.getpid()), "EventTid": str(threading.get_ident()),
                "OperationId": operation_id[:128],
            }
            data = json.dumps([event]).encode("utf-8")
            if len(data) > MAX_EVENT_BYTES:
                event["Message"] = _truncate(event["Message"], MAX_MESSAGE_BYTES // 2)
                data = json.dumps([event]).encode("utf-8")
            path = self.folder / f"{time.time_ns()}.json"
            write_atomic(path, data, mode=0o644)
            return path
        except OSError:
            return None  # telemetry is best effort by the agent's own contract


def _truncate(text: str, limit: int) -> str:
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return text
    return raw[: limit - 3].decode("utf-8", "ignore") + "..."
