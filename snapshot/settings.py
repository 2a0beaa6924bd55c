"""Parse and validate the backup service's public and protected settings, once, at the edge."""
from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from plumbing.blobstore import BlobError, sas_expired, validate_blob_uri
from snapshot.errors import Code, SnapshotSettingsError, TooLateError

COMMANDS = ("snapshot", "install")
TOO_LATE_AFTER = timedelta(minutes=140)
_TICKS_EPOCH = datetime(1, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class CustomSettings:
    """The service's customSettings JSON string, typed."""

    is_managed_vm: bool = False
    can_take_crash_consistent: bool = False
    backup_retry_count: int = 0
    take_snapshot_from: str = ""


@dataclass(frozen=True)
class SnapshotSettings:
    """Everything one snapshot (or install) command asks for."""

    task_id: str
    command: str
    start_ticks: str = ""
    start_time: datetime | None = None
    locale: str = ""
    vm_type: str = ""
    blob_sas_uris: tuple[str, ...] = ()
    backup_metadata: tuple[tuple[str, str], ...] = ()
    included_disks: Mapping[str, Any] = field(default_factory=dict)
    custom: CustomSettings = CustomSettings()
    logs_blob_uri: str | None = None
    status_blob_uri: str | None = None

    def secrets(self) -> list[str]:
        """Values to register with a Redactor: every SAS URI and its query string."""
        uris = list(self.blob_sas_uris) + [u for u in (self.logs_blob_uri,
                                                       self.status_blob_uri) if u]
        return uris + [u.split("?", 1)[1] for u in uris if "?" in u]


def ticks_to_datetime(raw: Any) -> datetime:
    """.NET ticks (100 ns since 0001-01-01 UTC), possibly in exponent form, as a datetime."""
    try:
        ticks = Decimal(str(raw).strip())
    except (InvalidOperation, ValueError):
        raise ValueError(f"commandStartTimeUTCTicks {str(raw)[:40]!r} is not a number") from None
    if not ticks.is_finite() or ticks <= 0:
        raise ValueError(f"commandStartTimeUTCTicks {str(raw)[:40]!r} is not a positive number")
    try:
        return _TICKS_EPOCH + timedelta(microseconds=int(ticks) // 10)
    except OverflowError:
        raise ValueError(f"commandStartTimeUTCTicks {str(raw)[:40]!r} is out of range") from None


def decode_object_str(raw: Any, name: str) -> dict[str, Any]:
    """base64 → text → strip whitespace → JSON object; ValueError names the field."""
    if isinstance(raw, dict):
        return raw
    if not isinstance(raw, str) or not raw.strip():
        raise ValueError(f"{name} is missing or empty")
    try:
        text = base64.b64decode(raw.strip(), validate=True).decode("utf-8").strip()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValueError(f"{name} is not valid base64") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{name} is not JSON after base64 decoding ({exc.msg})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{name} does not decode to a JSON object")  # noqa: TRY004
    return value


def parse_snapshot_settings(public: Mapping[str, Any], protected: Mapping[str, Any], *,
                            now: datetime) -> SnapshotSettings:
    """Typed settings, or SnapshotSettingsError listing every problem (402 when only too late)."""
    public, protected = dict(public or {}), dict(protected or {})
    problems: list[str] = []
    task_id = public.get("taskId")
    if not isinstance(task_id, str) or not task_id.strip():
        problems.append("taskId is missing or empty")
    command = public.get("commandToExecute")
    if not isinstance(command, str) or command.strip().lower() not in COMMANDS:
        problems.append(f"commandToExecute {str(command)[:40]!r} is not one of "
                        f"{', '.join(COMMANDS)}")
        command = ""
    command = command.strip().lower()
    fields: dict[str, Any] = {}
    if command == "snapshot":
        fields = _snapshot_fields(public, protected, problems, now)
    if problems:
        raise SnapshotSettingsError(problems)
    settings = SnapshotSettings(task_id=task_id.strip(), command=command,
                                locale=str(public.get("locale") or ""),
                                vm_type=str(public.get("vmType") or ""), **fields)
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


def _snapshot_fields(public: dict[str, Any], protected: dict[str, Any],
                     problems: list[str], now: datetime) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    raw_ticks = public.get("commandStartTimeUTCTicks")
    try:
        fields["start_time"] = ticks_to_datetime(raw_ticks)
        fields["start_ticks"] = str(raw_ticks).strip()
    except ValueError as exc:
        problems.append(str(exc) if raw_ticks is not None
                        else "commandStartTimeUTCTicks is missing")
    public_obj = _object(public.get("objectStr"), "public objectStr", problems, required=True)
    protected_obj = _object(protected.get("objectStr"), "protected objectStr", problems,
                            required=True)
    fields["blob_sas_uris"] = _blob_uris(protected_obj.get(
        "blobSASUri", public_obj.get("blobSASUri")), problems, now)
    fields["backup_metadata"] = _metadata(public_obj.get("backupMetadata"), problems)
    included = public_obj.get("includedDisks") or {}
    fields["included_disks"] = included if isinstance(included, dict) else {}
    fields["custom"] = _custom(public.get("customSettings"), problems)
    for key, attr in (("logsBlobUri", "logs_blob_uri"), ("statusBlobUri", "status_blob_uri")):
        fields[attr] = _optional_uri(protected.get(key) or public.get(key), key, problems)
    return fields


def _object(raw: Any, name: str, problems: list[str], required: bool) -> dict[str, Any]:
    if raw is None and not required:
        return {}
    try:
        return decode_object_str(raw, name)
    except ValueError as exc:
        problems.append(str(exc))
        return {}


def _blob_uris(raw: Any, problems: list[str], now: datetime) -> tuple[str, ...]:
    if not isinstance(raw, list) or not raw:
        problems.append("objectStr.blobSASUri is missing or not a non-empty list")
        return ()
    uris = []
    for index, uri in enumerate(raw):
        try:
            uris.append(validate_blob_uri(uri))
        except BlobError as exc:
            problems.append(f"blobSASUri[{index}]: {exc}")
            continue
        if sas_expired(uri, now):  # with the injected clock: parsing stays deterministic
            problems.append(f"blobSASUri[{index}]: the SAS token has expired")
    return tuple(uris)


def _metadata(raw: Any, problems: list[str]) -> tuple[tuple[str, str], ...]:
    if not isinstance(raw, list) or not raw:
        problems.append("objectStr.backupMetadata is missing or not a non-empty list")
        return ()
    pairs = []
    for index, item in enumerate(raw):
        key = item.get("Key") if isinstance(item, dict) else None
        if not isinstance(key, str) or not key.isidentifier():
            problems.append(f"backupMetadata[{index}].Key is missing or not an identifier")
            continue
        pairs.append((key, str(item.get("Value", ""))))
    return tuple(pairs)


def _custom(raw: Any, problems: list[str]) -> CustomSettings:
    if raw in (None, ""):
        return CustomSettings()
    try:
        value = json.loads(raw) if isinstance(raw, str) else raw
        if not isinstance(value, dict):
            raise ValueError("not an object")  # noqa: TRY004
        return CustomSettings(
            is_managed_vm=_flag(value.get("isManagedVm")),
            can_take_crash_consistent=_flag(value.get("canTakeCrashConsistentSnapshot")),
            backup_retry_count=int(value.get("backupRetryCount") or 0),
            take_snapshot_from=str(value.get("takeSnapshotFrom") or ""))
    except (ValueError, TypeError):
        problems.append("customSettings is not a JSON object with the expected types")
        return CustomSettings()


def _flag(value: Any) -> bool:
    return value is True or str(value).strip().lower() == "true"


def _optional_uri(raw: Any, name: str, problems: list[str]) -> str | None:
    if raw in (None, ""):
        return None
    try:
        return validate_blob_uri(raw)
    except BlobError as exc:
        problems.append(f"{name}: {exc}")
        return None


__all__ = [
    "Code",
    "CustomSettings",
    "SnapshotSettings",
    "check_not_too_late",
    "decode_object_str",
    "parse_snapshot_settings",
    "ticks_to_datetime",
]
