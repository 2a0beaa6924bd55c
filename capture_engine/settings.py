"""Parse the `packetCapture` settings object into a frozen CaptureRequest, all problems at once."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

from capture_engine.bpf import compile_filters
from capture_engine.errors import (
    InvalidActionError,
    InvalidFilePathError,
    InvalidLimitError,
    InvalidSettingsError,
    InvalidStoragePathError,
    ProblemList,
)
from capture_engine.filters import CaptureFilter, parse_filters
from plumbing.blobstore import BlobError, validate_blob_uri
from plumbing.redact import strip_query

CAPTURE_ROOT = "/var/captures"
U32_MAX = 4_294_967_295
ACTIONS = ("start", "stop", "delete")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,78}[A-Za-z0-9_]$|^[A-Za-z0-9]$")
IFNAME = re.compile(r"^[^/\s:]{1,15}$")
# field: (default, maximum); a value of 0 means "the default", except bytesToCapturePerPacket
# where 0 means the whole packet.
LIMITS = {
    "bytesToCapturePerPacket": (0, U32_MAX),
    "totalBytesPerSession": (1_073_741_824, U32_MAX),
    "timeLimitInSeconds": (18_000, 18_000),
}
RING_LIMITS = {
    "fileCount": (10, 10_000),
    "fileSizeInBytes": (104_857_600, U32_MAX),
    "sessionTimeLimitInSeconds": (86_400, 604_800),
}
TOP_FIELDS = {"name", "action", "storageLocation", "filters", "continuousCapture",
              "captureSettings", "interfaces", *LIMITS}
MIN_FILE_BYTES = 24 + 16 + 1  # pcap header and one record of one byte


@dataclass(frozen=True)
class RingSettings:
    """continuousCapture: a ring of `file_count` files of at most `file_size` bytes each."""

    file_count: int = 10
    file_size: int = 104_857_600
    session_time_limit: int = 86_400


@dataclass(frozen=True)
class CaptureRequest:
    """One validated packetCapture order (the CLI also builds these directly)."""

    name: str
    action: str = "start"
    bytes_per_packet: int = 0
    total_bytes: int = 1_073_741_824
    time_limit: float = 18_000
    storage_path: Optional[str] = None
    file_path: Optional[str] = None
    local_path: Optional[str] = None
    filters: Tuple[CaptureFilter, ...] = ()
    ring: Optional[RingSettings] = None
    interfaces: Tuple[str, ...] = ()
    capture_root: str = CAPTURE_ROOT
    bpf_expression: Optional[str] = None   # CLI only: a tcpdump expression instead of filters
    packet_count: Optional[int] = None     # CLI only: stop after this many packets

    @property
    def effective_time_limit(self) -> float:
        return self.ring.session_time_limit if self.ring else self.time_limit

    def output_path(self) -> str:
        """The file (or ring base) written on the VM; a pending file when only uploading."""
        chosen = self.local_path if self.ring else self.file_path
        return chosen or os.path.join(self.capture_root, ".pending", f"{self.name}.cap")


def _limit(obj: Dict[str, Any], key: str, bounds: Tuple[int, int], path: str,
           problems: ProblemList) -> int:
    default, maximum = bounds
    raw = obj.get(key)
    if raw is None:
        return default
    if isinstance(raw, bool) or not isinstance(raw, (int, str)) or \
            not re.fullmatch(r"-?\d+", str(raw).strip()):
        problems.add(path + key, f"must be a whole number, got {raw!r}", InvalidLimitError)
        return default
    value = int(str(raw).strip())
    if value < 0 or value > maximum:
        problems.add(path + key, f"{value} is out of range 0 - {maximum:,}", InvalidLimitError)
        return default
    if value == 0 and key != "bytesToCapturePerPacket":
        return default
    return value


def _local_file(raw: Any, field: str, root: str, problems: ProblemList) -> Optional[str]:
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str):
        problems.add(field, "must be a string path", InvalidFilePathError)
        return None
    if not raw.lower().endswith(".cap"):
        problems.add(field, f"{raw!r} must end in .cap", InvalidFilePathError)
        return None
    base = os.path.realpath(root)
    full = os.path.realpath(os.path.join(base, raw))  # a relative path is under the root
    if ".." in raw.replace("\\", "/").split("/") or not full.startswith(base + os.sep):
        problems.add(field, f"{raw!r} must be a file under {root}", InvalidFilePathError)
        return None
    return full


def _storage(obj: Dict[str, Any], ring: bool, root: str, problems: ProblemList):
    location = obj.get("storageLocation")
    if location is None:
        location = {}
    if not isinstance(location, dict):
        problems.add("storageLocation", "must be an object", InvalidSettingsError)
        return None, None, None
    storage = location.get("storagePath") or None
    if storage is not None:
        try:
            storage = validate_blob_uri(storage)
        except BlobError as exc:
            problems.add("storageLocation.storagePath", str(exc), InvalidStoragePathError)
            storage = None
    file_path = _local_file(location.get("filePath"), "storageLocation.filePath", root, problems)
    local = _local_file(location.get("localPath"), "storageLocation.localPath", root, problems)
    if ring and file_path:
        problems.add("storageLocation.filePath", "filePath cannot be used with "
                     "continuousCapture: give localPath instead", InvalidFilePathError)
    if not ring and local:
        problems.add("storageLocation.localPath", "localPath is only for continuousCapture: "
                     "give filePath instead", InvalidFilePathError)
    given = {k for k in ("storagePath", "filePath", "localPath") if location.get(k)}
    if not given:
        problems.add("storageLocation", "give storagePath, filePath (or localPath with "
                     "continuousCapture)", InvalidFilePathError)
    return storage, file_path, local


def _ring(obj: Dict[str, Any], problems: ProblemList) -> Optional[RingSettings]:
    flag = obj.get("continuousCapture")
    if flag is not None and not isinstance(flag, bool):
        problems.add("continuousCapture", "must be true, false or null", InvalidSettingsError)
        return None
    raw = obj.get("captureSettings") or {}
    if not isinstance(raw, dict):
        problems.add("captureSettings", "must be an object", InvalidSettingsError)
        raw = {}
    values = [_limit(raw, key, bounds, "captureSettings.", problems)
              for key, bounds in RING_LIMITS.items()]
    if flag and values[1] < MIN_FILE_BYTES:
        problems.add("captureSettings.fileSizeInBytes",
                     f"must be at least {MIN_FILE_BYTES} bytes", InvalidLimitError)
    return RingSettings(*values) if flag else None


def _interfaces(raw: Any, problems: ProblemList) -> Tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(i, str) and IFNAME.match(i) for i in raw):
        problems.add("interfaces", "must be a list of interface names (1-15 characters, "
                     "no '/', ':' or spaces)", InvalidSettingsError)
        return ()
    return tuple(raw)


def _name_and_action(obj: Dict[str, Any], problems: ProblemList) -> Tuple[str, str]:
    name = obj.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        problems.add("name", "required: 1-80 letters, digits, '_', '.', '-' (starting with a "
                     "letter or digit)", InvalidSettingsError)
        name = ""
    action = obj.get("action", "start")
    action = action.strip().lower() if isinstance(action, str) else ""
    if action not in ACTIONS:
        problems.add("action", f"must be one of {', '.join(ACTIONS)}, got {obj.get('action')!r}",
                     InvalidActionError)
    return name, action


def parse_capture_settings(obj: Any, *, capture_root: str = CAPTURE_ROOT) -> CaptureRequest:
    """Validate the packetCapture object; raise CaptureSettingsError listing every problem."""
    problems = ProblemList()
    if not isinstance(obj, dict):
        problems.add("packetCapture", "must be an object", InvalidSettingsError)
        problems.raise_if_any()
    for key in sorted(set(obj) - TOP_FIELDS):
        problems.add(key, f"unknown field (known: {', '.join(sorted(TOP_FIELDS))})")
    name, action = _name_and_action(obj, problems)
    limits = {key: _limit(obj, key, bounds, "", problems) for key, bounds in LIMITS.items()}
    if 0 < limits["totalBytesPerSession"] < MIN_FILE_BYTES:
        problems.add("totalBytesPerSession", f"must be 0 (default) or at least {MIN_FILE_BYTES}",
                     InvalidLimitError)
    ring = _ring(obj, problems)
    filters = parse_filters(obj.get("filters"), "filters", problems)
    interfaces = _interfaces(obj.get("interfaces"), problems)
    storage, file_path, local = (None, None, None)
    if action == "start" or obj.get("storageLocation") is not None:
        storage, file_path, local = _storage(obj, ring is not None, capture_root, problems)
    if filters:
        try:
            compile_filters(filters, limits["bytesToCapturePerPacket"])
        except ValueError as exc:
            problems.add("filters", str(exc), InvalidSettingsError)
    problems.raise_if_any()
    return CaptureRequest(
        name=name, action=action, bytes_per_packet=limits["bytesToCapturePerPacket"],
        total_bytes=limits["totalBytesPerSession"], time_limit=limits["timeLimitInSeconds"],
        storage_path=storage, file_path=file_path, local_path=local, filters=filters, ring=ring,
        interfaces=interfaces, capture_root=capture_root)


def storage_url(request: CaptureRequest, sas_token: Optional[str], suffix: str = "") -> str:
    """The blob URL to upload to, with the SAS token from protected settings appended."""
    base = request.storage_path or ""
    if suffix:
        path, _, query = base.partition("?")
        stem, ext = os.path.splitext(path)
        base = f"{stem}{suffix}{ext or '.cap'}" + (f"?{query}" if query else "")
    if sas_token:
        base += ("&" if "?" in base else "?") + sas_token.lstrip("?")
    return base


def public_url(url: str) -> str:
    return strip_query(url)
