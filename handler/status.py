"""The agent's status file and heartbeat: exact schema, atomic writes, under 128 KiB."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

from handler.errors import StatusCode, StatusWriteError
from plumbing.clock import utc_timestamp
from plumbing.files import write_atomic

STATUS_VALUES = ("transitioning", "warning", "error", "success")
MAX_STATUS_BYTES = 128 * 1024
# Room kept below the agent's limit so a trimmed file is safely under it.
TARGET_STATUS_BYTES = MAX_STATUS_BYTES - 4096
CAPABILITY_KEY = "capability"  # beside a code: the table the number is from
# Keys an operation's extra keys never replace and trimming never shortens.
AGENT_KEYS = ("name", "operation", "status", "code", "configurationAppliedTime",
              "formattedMessage", "substatus", CAPABILITY_KEY)
TRIMMED_NOTE = " [trimmed to keep the status file under 128 KiB]"
MAX_MESSAGE_CHARS = 10 * 1024  # the agent cuts each substatus name and message there
MIN_MESSAGE_CHARS = 1024
# Fields a shortened JSON message always keeps: what the session is and how it ended.
_ESSENTIAL = re.compile(r"status|error|code|name|reason|consistency|task|time", re.IGNORECASE)


@dataclass(frozen=True)
class Substatus:
    name: str
    status: str
    code: StatusCode
    message: str


@dataclass(frozen=True)
class StatusReport:
    """One status file's content, before it is rendered to the agent's JSON."""

    name: str
    operation: str
    status: str
    code: StatusCode
    message: str
    substatus: list[Substatus] = field(default_factory=list)

    def __post_init__(self) -> None:
        for value in [self.status] + [s.status for s in self.substatus]:
            if value not in STATUS_VALUES:
                raise ValueError(f"status {value!r} is not one of {STATUS_VALUES}")


def render(report: StatusReport, now: datetime,
           extra: Optional[dict[str, Any]] = None) -> list[dict[str, Any]]:
    """The agent's document; `extra` adds keys the agent ignores (never replaces its own).
    Every non-zero code comes with `capability`, the table it is from (0 is success in all)."""
    stamp = utc_timestamp(now)
    return [{
        "version": 1.0,
        "timestampUTC": stamp,
        "status": {
            "name": report.name,
            "operation": report.operation,
            "status": report.status,
            **_coded(report.code),
            "configurationAppliedTime": stamp,
            "formattedMessage": {"lang": "en-US", "message": report.message},
            "substatus": [
                {"name": s.name, "status": s.status, **_coded(s.code),
                 "formattedMessage": {"lang": "en-US", "message": s.message}}
                for s in report.substatus
            ],
            **{k: v for k, v in (extra or {}).items() if k not in AGENT_KEYS},
        },
    }]


def _coded(code: StatusCode) -> dict[str, Any]:
    """`code`, the integer the agent requires, and `capability` beside it (the agent ignores
    a key it does not know)."""
    return {"code": int(code.code), **({CAPABILITY_KEY: code.capability} if code.code else {})}


def encode_within_limit(document: list[dict[str, Any]]) -> bytes:
    """Serialize under the agent's limits: every message at most 10 KiB (the agent would cut
    it), the whole file under 128 KiB. A message holding a JSON object is shortened to a JSON
    object that keeps its status and error fields; entries are dropped only as a last resort,
    finished ones first, and a last entry says how many."""
    status = document[0]["status"]
    substatus = status["substatus"]
    for entry in substatus:
        _shrink_entry(entry, MAX_MESSAGE_CHARS)
    top = status["formattedMessage"]
    top["message"] = shrink_message(top["message"], MAX_MESSAGE_CHARS)

    def dump() -> bytes:
        return json.dumps(document, separators=(",", ":")).encode("utf-8")

    data = dump()
    while len(data) > TARGET_STATUS_BYTES and substatus:  # 1. longest messages first
        longest = max(substatus, key=lambda entry: len(entry["formattedMessage"]["message"]))
        size = len(longest["formattedMessage"]["message"])
        if size <= MIN_MESSAGE_CHARS:
            break
        _shrink_entry(longest, max(MIN_MESSAGE_CHARS, size - (len(data) - TARGET_STATUS_BYTES)))
        data = dump()
    for key in sorted((k for k in status if k not in AGENT_KEYS),  # 2. our extra keys
                      key=lambda k: -len(json.dumps(status[k]))):
        if len(data) <= TARGET_STATUS_BYTES:
            break
        status[key] = _shorter(status[key])
        data = dump()
    dropped = 0
    while len(data) > TARGET_STATUS_BYTES and substatus:  # 3. then whole entries
        finished = [e for e in substatus if e["status"] in ("success", "error")]
        substatus.remove(finished[0] if finished else substatus[-1])
        dropped += 1
        data = dump()
    if dropped:
        substatus.append({"name": "omitted", "status": "warning", "code": 0, "formattedMessage": {
            "lang": "en-US", "message": f"{dropped} substatus entries omitted{TRIMMED_NOTE}"}})
        data = dump()
    return data


def _shrink_entry(entry: dict[str, Any], limit: int) -> None:
    entry["name"] = entry["name"][:MIN_MESSAGE_CHARS]
    message = entry["formattedMessage"]["message"]
    entry["formattedMessage"]["message"] = shrink_message(message, limit)


def shrink_message(message: str, limit: int) -> str:
    """`message` in at most `limit` characters. A JSON object stays valid JSON: the values of
    its status, error, code, name and reason fields are kept, the bulkiest others shortened
    (lists keep their first and last items and a count), and `"trimmed": true` says so."""
    if len(message) <= limit:
        return message
    try:
        value = json.loads(message)
    except ValueError:
        value = None
    if isinstance(value, dict):
        shrunk = _shrink_object(value, limit)
        if shrunk is not None:
            return shrunk
    return message[:max(0, limit - len(TRIMMED_NOTE))] + TRIMMED_NOTE


def _shrink_object(value: dict[str, Any], limit: int) -> Optional[str]:
    value = dict(value, trimmed=True)
    for _ in range(4 * len(value)):
        text = json.dumps(value)
        if len(text) <= limit:
            return text
        bulky = [k for k in value if not _ESSENTIAL.search(k) and k != "trimmed"]
        if not bulky:
            break
        key = max(bulky, key=lambda k: len(json.dumps(value[k])))
        if len(json.dumps(value[key])) <= 64:
            break
        value[key] = _shorter(value[key])
    for key in value:  # essential values themselves, only when nothing else is left
        if isinstance(value[key], str) and len(value[key]) > MIN_MESSAGE_CHARS // 4:
            value[key] = value[key][:MIN_MESSAGE_CHARS // 4] + TRIMMED_NOTE
    text = json.dumps(value)
    return text if len(text) <= limit else None


def _shorter(item: Any) -> Any:
    """A smaller stand-in for a bulky JSON value, of the same kind."""
    if isinstance(item, list):
        if len(item) > 2:
            return [item[0], f"... {len(item) - 2} more ...", item[-1]]
        return [_shorter(x) for x in item]
    if isinstance(item, dict):
        return {"trimmed": f"{len(item)} keys"}
    if isinstance(item, str):
        return item[:48] + "..."
    return None


def write_status(status_folder: Path, seq: int, report: StatusReport, now: datetime,
                 extra: Optional[dict[str, Any]] = None) -> bytes:
    data = encode_within_limit(render(report, now, extra))
    try:
        write_atomic(status_folder / f"{seq}.status", data, mode=0o644)
    except OSError as exc:
        raise StatusWriteError(f"cannot write {status_folder}/{seq}.status: "
                               f"{exc.strerror or exc}") from None
    return data


def read_status(status_folder: Path, seq: int) -> Optional[list[dict[str, Any]]]:
    try:
        document: list[dict[str, Any]] = json.loads(
            (status_folder / f"{seq}.status").read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None
    return document


def write_heartbeat(path: Path, message: str, code: int = 0) -> None:
    document = [{"version": 1.0, "heartbeat": {
        "status": "Ready", "code": code,
        "formattedMessage": {"lang": "en-US", "message": message}}}]
    write_atomic(path, json.dumps(document).encode("utf-8"), mode=0o644)
