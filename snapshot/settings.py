"""Parse and validate the backup service's public and protected settings, once, at the edge."""
from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Optional

from plumbing.blobstore import BlobError, sas_expired, validate_blob_uri
from snapshot.errors import Code, TooLateError
from snapshot.fields import FieldError, Problems, describe, load_json, preview, text
from snapshot.objects import CustomSettings, parse_custom, parse_dynamic_configs
from snapshot.selection import IncludedDisks, parse_included_disks, plan_disks

COMMANDS = ("snapshot", "install")
TOO_LATE_AFTER = timedelta(minutes=140)
_TICKS_EPOCH = datetime(1, 1, 1, tzinfo=timezone.utc)
MAX_TICKS = 3155378975999999999  # .NET DateTime.MaxValue
_TICKS_TEXT = re.compile(r"^[0-9]{1,20}(\.[0-9]{1,20})?([eE]\+?[0-9]{1,2})?$")
MAX_OBJECT_STR = 512 * 1024
MAX_URI = 8 * 1024
MAX_DISKS = 128
MAX_METADATA = 64


@dataclass(frozen=True)
class SnapshotSettings:
    """Everything one snapshot (or install) command asks for."""

    task_id: str
    command: str
    start_ticks: str = ""
    start_time: Optional[datetime] = None
    locale: str = ""
    vm_type: str = ""
    blob_sas_uris: tuple[str, ...] = ()
    backup_metadata: tuple[tuple[str, str], ...] = ()
    included_disks: IncludedDisks = IncludedDisks()
    custom: CustomSettings = CustomSettings()
    logs_blob_uri: Optional[str] = None
    status_blob_uri: Optional[str] = None
    snapshot_task_token: str = ""
    snapshot_ttl_enabled: bool = False

    def secrets(self) -> list[str]:
        """Values to register with a Redactor: every SAS URI, its query string, the token."""
        uris = list(self.blob_sas_uris) + [u for u in (self.logs_blob_uri,
                                                       self.status_blob_uri) if u]
        return uris + [u.split("?", 1)[1] for u in uris if "?" in u] + [self.snapshot_task_token]


def ticks_to_datetime(raw: Any) -> datetime:
    """.NET ticks (100 ns since 0001-01-01 UTC), possibly in exponent form, as a datetime.

    Bounded before any arithmetic: "1e2000000" must not become a two-million-digit integer.
    """
    name = "commandStartTimeUTCTicks"
    ticks: Optional[Decimal] = None
    if isinstance(raw, int) and not isinstance(raw, bool):
        ticks = Decimal(raw) if 0 < raw <= MAX_TICKS else None
    elif isinstance(raw, float) and raw == raw and abs(raw) != float("inf"):
        ticks = Decimal(raw)
    elif isinstance(raw, str) and len(raw) <= 64 and _TICKS_TEXT.match(raw.strip()):
        ticks = Decimal(raw.strip())
    elif raw is None or (isinstance(raw, str) and not raw.strip()):
        raise FieldError(f"{name} is missing")
    else:
        raise FieldError(f"{name} must be .NET ticks as a number or a string like "
                         f"6.36458E+17, not {describe(raw)}")
    if ticks is None or not 0 < ticks <= MAX_TICKS:
        raise FieldError(f"{name} is out of range (1 to {MAX_TICKS} ticks)")
    return _TICKS_EPOCH + timedelta(microseconds=int(ticks) // 10)


def decode_object_str(raw: Any, name: str) -> dict[str, Any]:
    """base64 → text → strip whitespace → JSON object; FieldError names the field."""
    if isinstance(raw, dict):
        return raw
    value = text(raw.strip() if isinstance(raw, str) else raw, name, required=True,
                 max_len=MAX_OBJECT_STR)
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8").strip()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise FieldError(f"{name} is not valid base64 of UTF-8 text") from None
    obj = load_json(decoded, name, MAX_OBJECT_STR)
    if not isinstance(obj, dict):
        raise FieldError(f"{name} does not decode to a JSON object but to {describe(obj)}")
    return obj


def parse_snapshot_settings(public: Mapping[str, Any], protected: Mapping[str, Any], *,
                            now: datetime) -> SnapshotSettings:
    """Typed settings, or SnapshotSettingsError listing every problem (402 when only too late;
    17 when only includedDisks is wrong; otherwise 11)."""
    public = dict(public) if isinstance(public, Mapping) else {}
    protected = dict(protected) if isinstance(protected, Mapping) else {}
    problems = Problems()
    task_id = problems.check("", text, public.get("taskId"), "taskId", required=True,
                             max_len=256)
    command = public.get("commandToExecute")
    if not isinstance(command, str) or command.strip().lower() not in COMMANDS:
        problems.note(f"commandToExecute is {preview(command)}, not one of {', '.join(COMMANDS)}")
        command = ""
    command = command.strip().lower()
    locale = problems.check("", text, public.get("locale"), "locale", required=False,
                            max_len=64, ascii_only=True)
    vm_type = problems.check("", text, public.get("vmType"), "vmType", required=False,
                             max_len=256, ascii_only=True)
    fields: dict[str, Any] = {}
    if command == "snapshot":
        fields = _snapshot_fields(public, protected, problems, now)
    problems.raise_if_any()
    settings = SnapshotSettings(task_id=task_id, command=command, locale=locale,
                                vm_type=vm_type, **fields)
    if command == "snapshot":
        check_not_too_late(settings, now)
    return settings


def check_not_too_late(settings: SnapshotSettings, now: datetime,
                       limit: timedelta = TOO_LATE_AFTER) -> None:
    """Raise TooLateError (402) when the command arrived more than `limit` after its start."""
    if settings.start_time is not None and now - settings.start_time > limit:
        late = int((now - settings.start_time).total_seconds() // 60)
        raise TooLateError(f"commandStartTimeUTCTicks is {late} min in the past "
                           f"(limit {int(limit.total_seconds() // 60)} min): command too late")


def _snapshot_fields(public: dict[str, Any], protected: dict[str, Any], problems: Problems,
                     now: datetime) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    raw_ticks = public.get("commandStartTimeUTCTicks")
    fields["start_time"] = problems.check(None, ticks_to_datetime, raw_ticks)
    if fields["start_time"] is not None:
        fields["start_ticks"] = str(raw_ticks).strip()  # bounded by ticks_to_datetime
    public_obj: dict[str, Any] = problems.check({}, decode_object_str,
                                                public.get("objectStr"), "public objectStr")
    protected_obj: dict[str, Any] = problems.check({}, decode_object_str,
                                                   protected.get("objectStr"),
                                                   "protected objectStr")
    uris = _blob_uris(protected_obj.get("blobSASUri", public_obj.get("blobSASUri")),
                      problems, now)
    fields["blob_sas_uris"] = uris
    fields["backup_metadata"] = _metadata(public_obj.get("backupMetadata"), problems)
    included = problems.check(None, parse_included_disks, public_obj.get("includedDisks"))
    if included is not None:
        fields["included_disks"] = included
        if uris:
            problems.check(None, plan_disks, uris, included)
    fields["snapshot_task_token"] = problems.check(
        "", text, public_obj.get("snapshotTaskToken"), "objectStr.snapshotTaskToken",
        required=False, max_len=8192, ascii_only=True)
    fields["snapshot_ttl_enabled"] = problems.check(
        False, parse_dynamic_configs, public_obj.get("dynamicConfigsFromCRP"))
    fields["custom"] = problems.check(CustomSettings(), parse_custom,
                                      public.get("customSettings"))
    for key, attr in (("logsBlobUri", "logs_blob_uri"), ("statusBlobUri", "status_blob_uri")):
        where = "protected" if protected.get(key) not in (None, "") else "public"
        raw = protected.get(key) if where == "protected" else public.get(key)
        fields[attr] = problems.check(None, _optional_uri, raw, f"{where} {key}") or None
    return fields


def _blob_uris(raw: Any, problems: Problems, now: datetime) -> tuple[str, ...]:
    if not isinstance(raw, list) or not raw or len(raw) > MAX_DISKS:
        problems.note(f"objectStr.blobSASUri {_missing_or(raw)}a list of 1 to {MAX_DISKS} disk "
                     f"blob SAS URIs, not {describe(raw)}")
        return ()
    uris: list[str] = []
    for index, uri in enumerate(raw):
        name = f"objectStr.blobSASUri[{index}]"
        checked = problems.check("", _uri, uri, name)
        if not checked:
            continue
        if checked in uris:
            problems.note(f"{name} repeats blobSASUri[{uris.index(checked)}]")
        elif sas_expired(checked, now):  # the injected clock keeps parsing deterministic
            problems.note(f"{name}: the SAS token has expired")
        uris.append(checked)
    return tuple(uris)


def _missing_or(raw: Any) -> str:
    return "is missing: it must be " if raw is None else "must be "


def _uri(raw: Any, name: str) -> str:
    """A blob SAS URI; the message names the field, never the query string (the secret)."""
    value = text(raw, name, required=True, max_len=MAX_URI)
    try:
        return validate_blob_uri(value)
    except BlobError as exc:
        raise FieldError(f"{name}: {exc}") from None


def _optional_uri(raw: Any, name: str) -> str:
    return "" if raw in (None, "") else _uri(raw, name)


def _metadata(raw: Any, problems: Problems) -> tuple[tuple[str, str], ...]:
    if not isinstance(raw, list) or not raw or len(raw) > MAX_METADATA:
        problems.note(f"objectStr.backupMetadata {_missing_or(raw)}a list of 1 to "
                     f"{MAX_METADATA} {{Key, Value}} objects, not {describe(raw)}")
        return ()
    pairs = []
    for index, item in enumerate(raw):
        name = f"objectStr.backupMetadata[{index}]"
        if not isinstance(item, dict):
            problems.note(f"{name} must be a {{Key, Value}} object, not {describe(item)}")
            continue
        key = problems.check("", text, item.get("Key"), f"{name}.Key", required=True,
                             max_len=128, ascii_only=True)
        if key and not key.isidentifier():
            problems.note(f"{name}.Key must be an identifier (letters, digits, _)")
            continue
        value = item.get("Value", "")
        value = str(value) if isinstance(value, int) and abs(value) < 10**18 else value
        value = problems.check(None, text, value, f"{name}.Value", required=False,
                               max_len=1024, ascii_only=True)
        if key and value is not None:
            pairs.append((key, value))
    return tuple(pairs)


__all__ = [
    "Code",
    "CustomSettings",
    "SnapshotSettings",
    "check_not_too_late",
    "decode_object_str",
    "parse_snapshot_settings",
    "ticks_to_datetime",
]
