"""A generated sweep: every settings field × hostile values → its own coded error, fast, quiet.

Each (field, value) pair ends in SnapshotSettingsError with the field's code (11, or 17 for
includedDisks), a message naming the field, within 1 s, and without echoing a secret. Pairs
that are legitimately valid (an optional field left empty, a flag given as true) are listed in
the field's `accepts` and must parse.
"""
from __future__ import annotations

import base64
import json
import time
from datetime import datetime, timezone
from typing import Any, Dict, NamedTuple, Tuple

import pytest

from snapshot.errors import SnapshotSettingsError
from snapshot.settings import parse_snapshot_settings
from tests.snapshot.conftest import settings_dicts

SIG = "S3CRETsig0123456789"
URI = f"https://acct.blob.core.windows.net/vhds/d0.vhd?sv=2014-02-14&sr=b&sig={SIG}&sp=rw"
URI1 = URI.replace("d0.vhd", "d1.vhd")
NOW = datetime.now(timezone.utc)
DEEP = 100_000
MEGA = 1024 * 1024


class Hostile(NamedTuple):
    python: Any  # as the handler would hand it over after json.loads of the settings file
    json_text: str  # as it would appear inside base64 objectStr or the customSettings string


def _deep_list(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


VALUES: Dict[str, Hostile] = {
    "null": Hostile(None, "null"),
    "true": Hostile(True, "true"),
    "integer": Hostile(12345, "12345"),
    "fraction": Hostile(1.5, "1.5"),
    "list": Hostile(["x"], '["x"]'),
    "object": Hostile({"a": 1}, '{"a": 1}'),
    "word": Hostile("explode", '"explode"'),
    "empty-string": Hostile("", '""'),
    "empty-list": Hostile([], "[]"),
    "empty-object": Hostile({}, "{}"),
    "negative": Hostile(-1, "-1"),
    "negative-huge": Hostile(-10**30, "-" + "9" * 31),
    "nan": Hostile(float("nan"), "NaN"),
    "infinity": Hostile(float("inf"), "Infinity"),
    "minus-infinity": Hostile(float("-inf"), "-Infinity"),
    "1e400": Hostile(float("inf"), "1e400"),
    "million-digits": Hostile(10 ** (10**6), "9" * 10**6),
    "million-digit-string": Hostile("9" * 10**6, '"' + "9" * 10**6 + '"'),
    "exponent-2000000": Hostile("1e2000000", '"1e2000000"'),
    "nul": Hostile("a\x00b", '"a\\u0000b"'),
    "control": Hostile("x\x1b[31my\n", '"x\\u001b[31my\\n"'),
    "deep": Hostile(_deep_list(DEEP), "[" * DEEP + "]" * DEEP),
    "nested": Hostile(_deep_list(50), "[" * 50 + "]" * 50),
    "megabyte": Hostile("A" * MEGA, '"' + "A" * MEGA + '"'),
    "unicode": Hostile("ünïcødé-✓-\u202e", '"\\u00fcn\\u00efc\\u00f8d\\u00e9-\\u2713-\\u202e"'),
    "lone-surrogate": Hostile("\ud800", '"\\ud800"'),
}


class Field(NamedTuple):
    where: str  # public | protected | public_obj | protected_obj | custom
    path: Tuple[Any, ...]  # keys (and list indexes) from that container to the field
    name: str  # what the message must name
    code: int
    accepts: Tuple[str, ...] = ()  # hostile values this field legitimately takes
    codes: Tuple[Tuple[str, int], ...] = ()  # values with another code of the table


TEXT = ("word", "exponent-2000000")  # a short printable string: any text field takes it
OPTIONAL_TEXT = ("null", "empty-string") + TEXT
FIELDS = [
    Field("public", ("taskId",), "taskId", 11, TEXT + ("unicode",)),
    Field("public", ("commandToExecute",), "commandToExecute", 11),
    # Small tick counts are valid times in year 1: far too late (402), not malformed.
    Field("public", ("commandStartTimeUTCTicks",), "commandStartTimeUTCTicks", 11,
          codes=(("integer", 402), ("fraction", 402))),
    Field("public", ("locale",), "locale", 11, OPTIONAL_TEXT),
    Field("public", ("vmType",), "vmType", 11, OPTIONAL_TEXT),
    Field("public", ("objectStr",), "objectStr", 11),
    Field("public", ("customSettings",), "customSettings", 11,
          ("null", "empty-string", "empty-object", "object")),
    Field("public", ("logsBlobUri",), "logsBlobUri", 11, ("null", "empty-string")),
    Field("public", ("statusBlobUri",), "statusBlobUri", 11, ("null", "empty-string")),
    Field("protected", ("objectStr",), "objectStr", 11),
    Field("protected", ("logsBlobUri",), "logsBlobUri", 11, ("null", "empty-string")),
    Field("protected", ("statusBlobUri",), "statusBlobUri", 11, ("null", "empty-string")),
    Field("public_obj", ("backupMetadata",), "backupMetadata", 11),
    Field("public_obj", ("backupMetadata", 0, "Key"), "backupMetadata[0].Key", 11, ("word",)),
    Field("public_obj", ("backupMetadata", 0, "Value"), "backupMetadata[0].Value", 11,
          ("null", "integer", "negative", "empty-string", "true") + TEXT),
    Field("public_obj", ("snapshotTaskToken",), "snapshotTaskToken", 11, OPTIONAL_TEXT),
    Field("public_obj", ("includedDisks",), "includedDisks", 17,
          ("null", "empty-object", "object")),
    Field("public_obj", ("includedDisks", "dataDiskLunList"), "dataDiskLunList", 17,
          ("null",)),  # null: no LUN list, every disk blob is snapshotted
    Field("public_obj", ("includedDisks", "dataDiskLunList", 0), "dataDiskLunList[0]", 17),
    # null: the OS disk (blobSASUri[0]) is sent but not included, LUN 0 is blobSASUri[1]
    Field("public_obj", ("includedDisks", "isOSDiskIncluded"), "isOSDiskIncluded", 17,
          ("null", "true")),
    Field("public_obj", ("includedDisks", "isAnyDiskExcluded"), "isAnyDiskExcluded", 17,
          ("null", "true")),
    Field("public_obj", ("dynamicConfigsFromCRP",), "dynamicConfigsFromCRP", 11,
          ("null", "empty-list")),
    Field("public_obj", ("dynamicConfigsFromCRP", 0, "Key"), "dynamicConfigsFromCRP[0].Key",
          11, TEXT),  # a key the extension does not know is ignored, as by the original
    Field("public_obj", ("dynamicConfigsFromCRP", 0, "Value"), "isSnapshotTtlEnabled", 11,
          ("null", "true")),
    Field("protected_obj", ("blobSASUri",), "blobSASUri", 11),
    Field("protected_obj", ("blobSASUri", 0), "blobSASUri[0]", 11),
    Field("custom", ("isManagedVm",), "isManagedVm", 11, ("null", "true")),
    Field("custom", ("canTakeCrashConsistentSnapshot",), "canTakeCrashConsistentSnapshot", 11,
          ("null", "true")),
    Field("custom", ("backupRetryCount",), "backupRetryCount", 11, ("null",)),
    Field("custom", ("takeSnapshotFrom",), "takeSnapshotFrom", 11, ("null", "empty-string")),
]
# Inside objectStr / customSettings, a value that makes the whole text oversized (over its
# size limit) or too deeply nested to parse is reported for the container (code 11): no field
# inside is reached.
CONTAINER = {"public_obj": ("public objectStr", 11), "protected_obj": ("protected objectStr", 11),
             "custom": ("customSettings", 11)}
SWAMPS_CONTAINER = ("deep", "megabyte", "million-digits", "million-digit-string")
CASES = [(f, v) for f in FIELDS for v in VALUES]


def _base() -> Tuple[dict, dict, dict, dict, dict]:
    public, protected = settings_dicts([URI, URI1])
    public_obj = {"backupMetadata": [{"Key": "BackupJob", "Value": "job-1"}],
                  "includedDisks": {"isOSDiskIncluded": True, "dataDiskLunList": [0]},
                  "dynamicConfigsFromCRP": [{"Key": "isSnapshotTtlEnabled", "Value": False}],
                  "snapshotTaskToken": "token-1"}
    protected_obj = {"blobSASUri": [URI, URI1]}
    custom = {"isManagedVm": True, "canTakeCrashConsistentSnapshot": False,
              "backupRetryCount": 2, "takeSnapshotFrom": "onlyGuest"}
    return public, protected, public_obj, protected_obj, custom


def _place(container: Any, path: Tuple[Any, ...], value: Any) -> None:
    for key in path[:-1]:
        container = container[key]
    container[path[-1]] = value


def _as_text(obj: dict, path: Tuple[Any, ...], hostile: Hostile | None) -> str:
    """JSON text of obj, with the raw hostile JSON token at `path` when given."""
    if hostile is None:
        return json.dumps(obj)
    _place(obj, path, "@@HOSTILE@@")
    return json.dumps(obj).replace('"@@HOSTILE@@"', hostile.json_text)


def _b64(source: str) -> str:
    return base64.b64encode(source.encode("utf-8", "surrogatepass")).decode()


def build(field: Field, hostile: Hostile) -> Tuple[dict, dict]:
    public, protected, public_obj, protected_obj, custom = _base()

    def here(where: str) -> Hostile | None:
        return hostile if field.where == where else None
    public["objectStr"] = _b64(_as_text(public_obj, field.path, here("public_obj")))
    protected["objectStr"] = _b64(_as_text(protected_obj, field.path, here("protected_obj")))
    public["customSettings"] = _as_text(custom, field.path, here("custom"))
    if field.where in ("public", "protected"):
        _place(public if field.where == "public" else protected, field.path, hostile.python)
    return public, protected


def test_the_base_settings_are_valid():
    public, protected = build(FIELDS[0], Hostile("task_1", '"task_1"'))
    settings = parse_snapshot_settings(public, protected, now=NOW)
    assert settings.blob_sas_uris == (URI, URI1), settings
    assert settings.custom.backup_retry_count == 2 and settings.included_disks.luns == (0,)


@pytest.mark.parametrize(("field", "value"), CASES,
                         ids=[f"{f.where}.{'.'.join(map(str, f.path))}-{v}" for f, v in CASES])
def test_hostile_value(field: Field, value: str):
    public, protected = build(field, VALUES[value])
    started = time.monotonic()
    try:
        parse_snapshot_settings(public, protected, now=NOW)
        outcome = None
    except SnapshotSettingsError as exc:
        outcome = exc
    elapsed = time.monotonic() - started
    assert elapsed < 1.0, f"{field.name}={value}: took {elapsed:.1f}s (limit 1 s)"
    if value in field.accepts:
        assert outcome is None, f"{field.name}={value} is valid, yet: {outcome}"
        return
    assert outcome is not None, f"{field.name}={value} was accepted"
    name, code = field.name, dict(field.codes).get(value, field.code)
    if value in SWAMPS_CONTAINER and field.where in CONTAINER:
        name, code = CONTAINER[field.where]
    message = outcome.message
    assert outcome.code == code, f"{field.name}={value}: code {outcome.code}, not {code}: {message}"
    assert name in message, f"{field.name}={value}: the message must name {name}: {message}"
    assert SIG not in message and "token-1" not in message, f"a secret was echoed: {message}"
    assert len(message) < 2000, f"{field.name}={value}: message of {len(message)} characters"
