"""The agent's status file and heartbeat: exact schema, atomic writes, under 128 KiB."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, List, Optional

from handler.errors import StatusWriteError
from handler.state import write_atomic
from plumbing.clock import utc_timestamp

STATUS_VALUES = ("transitioning", "warning", "error", "success")
MAX_STATUS_BYTES = 128 * 1024
# Room kept below the agent's limit so a trimmed file is safely under it.
TARGET_STATUS_BYTES = MAX_STATUS_BYTES - 4096
AGENT_KEYS = ("name", "operation", "status", "code", "configurationAppliedTime",
              "formattedMessage", "substatus")
TRIMMED_NOTE = " [trimmed to keep the status file under 128 KiB]"


@dataclass(frozen=True)
class Substatus:
    name: str
    status: str
    code: int
    message: str


@dataclass(frozen=True)
class StatusReport:
    """One status file's content, before it is rendered to the agent's JSON."""

    name: str
    operation: str
    status: str
    code: int
    message: str
    substatus: List[Substatus] = field(default_factory=list)

    def __post_init__(self) -> None:
        for value in [self.status] + [s.status for s in self.substatus]:
            if value not in STATUS_VALUES:
                raise ValueError(f"status {value!r} is not one of {STATUS_VALUES}")


def render(report: StatusReport, now: datetime,
           extra: Optional[Dict[str, Any]] = None) -> List[Dict[str, Any]]:
    """The agent's document; `extra` adds keys the agent ignores (never replaces its own)."""
    stamp = utc_timestamp(now)
    return [{
        "version": 1.0,
        "timestampUTC": stamp,
        "status": {
            "name": report.name,
            "operation": report.operation,
            "status": report.status,
            "code": int(report.code),
            "configurationAppliedTime": stamp,
            "formattedMessage": {"lang": "en-US", "message": report.message},
            "substatus": [
                {"name": s.name, "status": s.status, "code": int(s.code),
                 "formattedMessage": {"lang": "en-US", "message": s.message}}
                for s in report.substatus
            ],
            **{k: v for k, v in (extra or {}).items() if k not in AGENT_KEYS},
        },
    }]


def encode_within_limit(document: List[Dict[str, Any]]) -> bytes:
    """Serialize; if too large, shorten long substatus messages, then drop entries."""
    def dump() -> bytes:
        return json.dumps(document, separators=(",", ":")).encode("utf-8")

    def message_of(entry: Dict[str, Any]) -> str:
        return entry["formattedMessage"]["message"]

    data = dump()
    substatus = document[0]["status"]["substatus"]
    while len(data) > TARGET_STATUS_BYTES and substatus:  # 1. longest messages first
        longest = max(substatus, key=lambda entry: len(message_of(entry)))
        message = message_of(longest)
        if len(message) <= 1024 + len(TRIMMED_NOTE):
            break
        keep = max(1024, len(message) - (len(data) - TARGET_STATUS_BYTES) - len(TRIMMED_NOTE))
        longest["formattedMessage"]["message"] = message[:keep] + TRIMMED_NOTE
        data = dump()
    while len(data) > TARGET_STATUS_BYTES and substatus:  # 2. then the newest entries
        substatus.pop()
        data = dump()
    if len(data) > TARGET_STATUS_BYTES:  # 3. a huge top-level message alone
        top = document[0]["status"]["formattedMessage"]
        top["message"] = top["message"][:1024] + TRIMMED_NOTE
        data = dump()
    return data


def write_status(status_folder: Path, seq: int, report: StatusReport, now: datetime,
                 extra: Optional[Dict[str, Any]] = None) -> bytes:
    data = encode_within_limit(render(report, now, extra))
    try:
        write_atomic(status_folder / f"{seq}.status", data, mode=0o644)
    except OSError as exc:
        raise StatusWriteError(f"cannot write {status_folder}/{seq}.status: "
                               f"{exc.strerror or exc}") from None
    return data


def read_status(status_folder: Path, seq: int) -> Optional[List[Dict[str, Any]]]:
    try:
        return json.loads((status_folder / f"{seq}.status").read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None


def write_heartbeat(path: Path, message: str, code: int = 0) -> None:
    document = [{"version": 1.0, "heartbeat": {
        "status": "Ready", "code": code,
        "formattedMessage": {"lang": "en-US", "message": message}}}]
    write_atomic(path, json.dumps(document).encode("utf-8"), mode=0o644)
