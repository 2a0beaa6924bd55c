"""Parse the `packetCapture` settings object into a frozen CaptureRequest, all problems at once."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from capture_engine.attach import check_attachable
from capture_engine.bpf import compile_filters
from capture_engine.errors import (
    FilterTooLargeError,
    InvalidActionError,
    InvalidLimitError,
    InvalidSettingsError,
    ProblemList,
)
from capture_engine.fields import PRINTABLE, SPACE, Fields, blank, read_fields, shown, whole_number
from capture_engine.filters import CaptureFilter, parse_filters
from capture_engine.locations import sas_token as parse_sas_token
from capture_engine.locations import storage_location
from capture_engine.naming import Rotation, ring_seq, ring_suffix
from capture_engine.seams import SourceOptions
from plumbing.redact import strip_query

U32_MAX = 4_294_967_295
# The defaults, declared here once: the CLI, the handler and docs/packet-capture.md refer to
# them (tests/test_defaults_once.py fails on a copy of one of these numbers elsewhere).
CAPTURE_ROOT = "/var/captures"
DEFAULT_TOTAL_BYTES = 1_073_741_824  # 1 GiB
DEFAULT_TIME_LIMIT = 18_000  # 5 hours, also the most allowed
DEFAULT_FILE_COUNT = 10
DEFAULT_FILE_SIZE = 104_857_600  # 100 MiB
DEFAULT_SESSION_TIME_LIMIT = 86_400  # a day
ACTIONS = ("start", "stop", "delete")
NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9_.-]{0,78}[A-Za-z0-9_])?", re.ASCII)  # fullmatch
NAME_RULE = "1-80 letters, digits, '_', '.', '-', starting with a letter or digit"
IFNAME = re.compile(r"[!-~]{1,15}", re.ASCII)  # fullmatch; no '/' or ':' either
MAX_TARGET_CHARS = 1024
# field: (default, maximum); a value of 0 means "the default", except bytesToCapturePerPacket
# where 0 means the whole packet.
LIMITS = {
    "bytesToCapturePerPacket": (0, U32_MAX),
    "totalBytesPerSession": (DEFAULT_TOTAL_BYTES, U32_MAX),
    "timeLimitInSeconds": (DEFAULT_TIME_LIMIT, DEFAULT_TIME_LIMIT),
}
RING_LIMITS = {
    "fileCount": (DEFAULT_FILE_COUNT, 10_000),
    "fileSizeInBytes": (DEFAULT_FILE_SIZE, U32_MAX),
    "sessionTimeLimitInSeconds": (DEFAULT_SESSION_TIME_LIMIT, 604_800),
}
TOP_FIELDS = ("name", "action", "target", *LIMITS, "storageLocation", "filters",
              "continuousCapture", "captureSettings", "interfaces")
# An ARM packetCaptures resource (a GET answer, a PUT body) wraps the fields in `properties`
# next to read-only ones; `name` there is the resource's, i.e. the capture's, name.
ENVELOPE = "properties"
RESOURCE_READ_ONLY = ("id", "etag", "type", "provisioningState")
BOOLEANS = {"true": True, "false": False}
MIN_FILE_BYTES = 24 + 16 + 1  # pcap header and one record of one byte


@dataclass(frozen=True)
class RingSettings:
    """continuousCapture: a ring of `file_count` files of at most `file_size` bytes each."""

    file_count: int = DEFAULT_FILE_COUNT
    file_size: int = DEFAULT_FILE_SIZE
    session_time_limit: int = DEFAULT_SESSION_TIME_LIMIT


@dataclass(frozen=True)
class CaptureRequest:
    """One validated packetCapture order (the CLI also builds these directly)."""

    name: str
    action: str = "start"
    bytes_per_packet: int = 0
    total_bytes: int = DEFAULT_TOTAL_BYTES
    time_limit: float = DEFAULT_TIME_LIMIT
    storage_path: Optional[str] = None
    file_path: Optional[str] = None
    local_path: Optional[str] = None
    filters: tuple[CaptureFilter, ...] = ()
    ring: Optional[RingSettings] = None
    interfaces: tuple[str, ...] = ()
    capture_root: str = CAPTURE_ROOT
    bpf_expression: Optional[str] = None   # CLI only: a tcpdump expression instead of filters
    packet_count: Optional[int] = None     # CLI only: stop after this many packets
    pcapng: bool = False                   # CLI only: pcapng, the interface of each packet
    rotation: Optional[Rotation] = None    # CLI only: tcpdump -C/-G/-W (in place of `ring`)
    source: SourceOptions = SourceOptions()  # CLI only: tcpdump -Q, -B, --immediate-mode
    target: Optional[str] = None           # the VM's resource id, echoed in the status
    claim_files: bool = False              # settings: record the files as this capture's
    sas_token: Optional[str] = field(default=None, repr=False)  # protected storageSasToken

    @property
    def effective_time_limit(self) -> float:
        return self.ring.session_time_limit if self.ring else self.time_limit

    def output_path(self) -> str:
        """The file (or ring base) written on the VM; a pending file when only uploading."""
        chosen = self.local_path if self.ring else self.file_path
        return chosen or os.path.join(self.capture_root, ".pending", f"{self.name}.cap")


def _limit(fields: Fields, key: str, bounds: tuple[int, int], problems: ProblemList) -> int:
    default, maximum = bounds
    raw = fields.get(key)
    if raw is None:
        return default
    value = whole_number(raw)
    if value is None:
        problems.add(fields.path(key), f"must be a whole number, got {shown(raw)}",
                     InvalidLimitError)
        return default
    if value < 0 or value > maximum:
        text = str(value) if abs(value) < 10 ** 18 else shown(raw)
        problems.add(fields.path(key), f"{text} is out of range 0 - {maximum:,}",
                     InvalidLimitError)
        return default
    if value == 0 and key != "bytesToCapturePerPacket":
        return default
    return value


def _ring(fields: Fields, problems: ProblemList) -> Optional[RingSettings]:
    flag = fields.get("continuousCapture")
    if isinstance(flag, str) and flag.strip(SPACE).lower() in BOOLEANS:
        flag = BOOLEANS[flag.strip(SPACE).lower()]
    if flag is not None and not isinstance(flag, bool):
        problems.add(fields.path("continuousCapture"), f"must be true, false or null, got "
                     f"{shown(flag)}", InvalidSettingsError)
        return None
    raw = fields.get("captureSettings")
    if raw is not None and not isinstance(raw, dict):
        problems.add(fields.path("captureSettings"), f"must be an object, got {shown(raw)}",
                     InvalidLimitError)
        raw = None
    ring = read_fields(raw or {}, tuple(RING_LIMITS), fields.path("captureSettings") + ".",
                       problems)
    values = [_limit(ring, key, bounds, problems) for key, bounds in RING_LIMITS.items()]
    if flag and values[1] < MIN_FILE_BYTES:
        problems.add(ring.path("fileSizeInBytes"), f"must be at least {MIN_FILE_BYTES} bytes",
                     InvalidLimitError)
    return RingSettings(*values) if flag else None


def _interfaces(fields: Fields, problems: ProblemList) -> tuple[str, ...]:
    raw = fields.get("interfaces")
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(
            isinstance(i, str) and IFNAME.fullmatch(i) and not set(i) & {"/", ":"}
            for i in raw):
        problems.add(fields.path("interfaces"), "must be a list of interface names (1-15 "
                     "printable ASCII characters, no '/', ':' or spaces)", InvalidSettingsError)
        return ()
    return tuple(raw)


def _name_and_action(fields: Fields, problems: ProblemList) -> tuple[str, str]:
    name = fields.get("name")
    if name is None:
        problems.add(fields.path("name"), "required: the capture's name (REST takes it from "
                     f"the URL, .../packetCaptures/{{name}}): {NAME_RULE}", InvalidSettingsError)
    elif not isinstance(name, str) or not NAME.fullmatch(name):
        problems.add(fields.path("name"), f"must be {NAME_RULE}, got {shown(name)}",
                     InvalidSettingsError)
    name = name if isinstance(name, str) and NAME.fullmatch(name) else ""
    raw = fields.get("action", "start")
    action = raw.strip(SPACE).lower() if isinstance(raw, str) else ""
    if action not in ACTIONS:
        problems.add(fields.path("action"), f"must be one of {', '.join(ACTIONS)}, got "
                     f"{shown(raw)}", InvalidActionError)
    return name, action


def _target(fields: Fields, problems: ProblemList) -> Optional[str]:
    raw = fields.get("target")
    if raw is None:
        return None
    if not isinstance(raw, str) or len(raw) > MAX_TARGET_CHARS or not PRINTABLE.fullmatch(raw):
        problems.add(fields.path("target"), "must be the VM's resource id (at most "
                     f"{MAX_TARGET_CHARS:,} printable ASCII characters), got {shown(raw)}",
                     InvalidSettingsError)
        return None
    return raw.strip(SPACE)


def _top_fields(obj: Mapping[Any, Any], problems: ProblemList) -> Fields:
    """The flat object, or an ARM resource whose `properties` hold the fields."""
    is_envelope = {key: isinstance(key, str) and key.lower() == ENVELOPE for key in obj}
    fields = read_fields({k: v for k, v in obj.items() if not is_envelope[k]}, TOP_FIELDS, "",
                         problems, RESOURCE_READ_ONLY)
    for key in (k for k in obj if is_envelope[k]):
        inner = obj[key]
        if isinstance(inner, dict):
            read_fields(inner, TOP_FIELDS, key + ".", problems, RESOURCE_READ_ONLY, fields)
        elif not (inner is None or isinstance(inner, str) and blank(inner)):
            problems.add(key, f"must be an object, got {shown(inner)}", InvalidSettingsError)
    return fields


def _check_size(filters: tuple[CaptureFilter, ...], snaplen: int, path: str,
                problems: ProblemList) -> None:
    try:
        check_attachable(compile_filters(filters, snaplen))
    except FilterTooLargeError as exc:
        problems.add(path, exc.message, FilterTooLargeError)


def parse_capture_settings(obj: Any, *, capture_root: str = CAPTURE_ROOT,
                           sas_token: object = None) -> CaptureRequest:
    """Validate the packetCapture object (flat, or an ARM resource with `properties`) and
    protectedSettings.storageSasToken; raise CaptureSettingsError listing every problem."""
    problems = ProblemList()
    if not isinstance(obj, dict):
        problems.add("packetCapture", f"must be an object, got {shown(obj)}",
                     InvalidSettingsError)
        problems.raise_if_any()
    fields = _top_fields(obj, problems)
    name, action = _name_and_action(fields, problems)
    limits: dict[str, int] = {key: _limit(fields, key, bounds, problems)
                              for key, bounds in LIMITS.items()}
    if 0 < limits["totalBytesPerSession"] < MIN_FILE_BYTES:
        problems.add(fields.path("totalBytesPerSession"),
                     f"must be 0 (default) or at least {MIN_FILE_BYTES}", InvalidLimitError)
    ring = _ring(fields, problems)
    before = len(problems)
    filters = parse_filters(fields.get("filters"), fields.path("filters"), problems)
    if filters and len(problems) == before:
        _check_size(filters, limits["bytesToCapturePerPacket"], fields.path("filters"), problems)
    interfaces = _interfaces(fields, problems)
    storage, file_path, local = (None, None, None)
    if action == "start" or "storageLocation" in fields:
        storage, file_path, local = storage_location(fields, ring is not None, capture_root,
                                                     problems)
    target, token = _target(fields, problems), parse_sas_token(sas_token, problems)
    problems.raise_if_any()
    return CaptureRequest(
        name=name, action=action, bytes_per_packet=limits["bytesToCapturePerPacket"],
        total_bytes=limits["totalBytesPerSession"], time_limit=limits["timeLimitInSeconds"],
        storage_path=storage, file_path=file_path, local_path=local, filters=filters, ring=ring,
        interfaces=interfaces, capture_root=capture_root, target=target, sas_token=token,
        claim_files=True)


def storage_url(request: CaptureRequest, sas_token: Optional[str] = None,
                suffix: str = "") -> str:
    """The blob URL to upload to, with the SAS token (given, else the request's) appended."""
    sas_token = sas_token if sas_token is not None else request.sas_token
    base = request.storage_path or ""
    if suffix:
        path, _, query = base.partition("?")
        stem, ext = os.path.splitext(path)
        base = f"{stem}{suffix}{ext or '.cap'}" + (f"?{query}" if query else "")
    if sas_token:
        base += ("&" if "?" in base else "?") + sas_token.lstrip("?")
    return base


def file_url(request: CaptureRequest, path: str, sas_token: Optional[str] = None) -> str:
    """The blob URL of one capture file: a ring file `…_N.cap` goes to `<storagePath
    stem>_N.cap`, N in full (never its last digits: no two files share a blob)."""
    if not request.ring:
        return storage_url(request, sas_token)
    return storage_url(request, sas_token, ring_suffix(ring_seq(path) or 0))


def public_url(url: str) -> str:
    return strip_query(url)
