"""customSettings and dynamicConfigsFromCRP: the service's small JSON objects, typed."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from snapshot.fields import FieldError, describe, flag, load_json, preview, text, whole_number

MAX_CUSTOM = 64 * 1024
MAX_RETRIES = 1000
MAX_DYNAMIC = 64
# The original's snapshot methods; this extension only has the guest path, so every one of
# them ends in a guest snapshot, but anything else is a parameter error.
SNAPSHOT_METHODS = ("onlyGuest", "firstGuestThenHost", "firstHostThenGuest", "onlyHost")
TTL_KEY = "isSnapshotTtlEnabled"


@dataclass(frozen=True)
class CustomSettings:
    """The service's customSettings JSON string, typed."""

    is_managed_vm: bool = False
    can_take_crash_consistent: bool = False
    backup_retry_count: int = 0
    take_snapshot_from: str = ""

    @property
    def retries_left(self) -> bool:
        return self.backup_retry_count > 0


def parse_custom(raw: Any) -> CustomSettings:
    """customSettings: a JSON string (or an object); FieldError names the key at fault."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return CustomSettings()
    if isinstance(raw, str):
        raw = load_json(raw, "customSettings", MAX_CUSTOM)
    if not isinstance(raw, dict):
        raise FieldError(f"customSettings must be a JSON object, not {describe(raw)}")
    method = raw.get("takeSnapshotFrom")
    if method not in (None, "") and (not isinstance(method, str) or method.strip().lower()
                                     not in {m.lower() for m in SNAPSHOT_METHODS}):
        raise FieldError(f"customSettings.takeSnapshotFrom is {preview(method)}, not one of "
                         f"{', '.join(SNAPSHOT_METHODS)}")
    retries = raw.get("backupRetryCount")
    return CustomSettings(
        is_managed_vm=flag(raw.get("isManagedVm"), "customSettings.isManagedVm"),
        can_take_crash_consistent=flag(raw.get("canTakeCrashConsistentSnapshot"),
                                       "customSettings.canTakeCrashConsistentSnapshot"),
        backup_retry_count=0 if retries is None else whole_number(
            retries, "customSettings.backupRetryCount", 0, MAX_RETRIES),
        take_snapshot_from=(method or "").strip())


def parse_dynamic_configs(raw: Any) -> bool:
    """dynamicConfigsFromCRP, a list of {Key, Value}: whether isSnapshotTtlEnabled is true.

    Other keys (useMccfForLad, ...) concern the host path this extension does not have; they
    are accepted and ignored, as the original ignores names it does not know.
    """
    name = "objectStr.dynamicConfigsFromCRP"
    if raw is None:
        return False
    if not isinstance(raw, list) or len(raw) > MAX_DYNAMIC:
        raise FieldError(f"{name} must be a list of at most {MAX_DYNAMIC} {{Key, Value}} "
                         f"objects, not {describe(raw)}")
    enabled = False
    for index, item in enumerate(raw):
        if not isinstance(item, dict):
            raise FieldError(f"{name}[{index}] must be a {{Key, Value}} object, not "
                             f"{describe(item)}")
        key = text(item.get("Key"), f"{name}[{index}].Key", required=True, max_len=128,
                   ascii_only=True)
        value = item.get("Value")
        if key.lower() == TTL_KEY.lower():
            enabled = flag(value, f"{name}[{index}].Value ({TTL_KEY})")
        elif value is not None and not isinstance(value, (bool, str)) and not (
                isinstance(value, int) and abs(value) < 10**18):
            raise FieldError(f"{name}[{index}].Value must be a string, true/false or a small "
                             f"integer, not {describe(value)}")
        elif isinstance(value, str):
            text(value, f"{name}[{index}].Value", required=False, max_len=1024)
    return enabled
