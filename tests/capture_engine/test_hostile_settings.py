"""Hostile values in every capture field: always the field's own coded error, fast, no secret.

Each value is placed in an otherwise valid settings object; the parse must raise
CaptureSettingsError whose problems all sit at that field (or under it) with the field's own
codes, within 1 s, with a short message that never holds the SAS token. Deterministic: the
random part comes from a fixed seed.
"""
from __future__ import annotations

import json
import random
import time
from typing import Any, Callable, Dict, Iterator, List, Sequence, Set, Tuple

from capture_engine.errors import CaptureSettingsError
from capture_engine.settings import parse_capture_settings

SEED = 20240611
SECRET = "c2VjcmV0LXNpZ25hdHVyZS1kby1ub3Qtc2hvdw"
SAS = f"sv=2022-11-02&sr=b&sp=cw&se=2030-01-01T00:00:00Z&sig={SECRET}"
MAX_SECONDS = 1.0
MAX_MESSAGE = 4000
BASE = {
    "name": "fuzz1", "action": "start", "target": "/subscriptions/x/virtualMachines/vm1",
    "bytesToCapturePerPacket": 0, "totalBytesPerSession": 100000, "timeLimitInSeconds": 60,
    "storageLocation": {"storagePath": "https://a.blob.core.windows.net/c/x.cap",
                        "filePath": "x.cap"},
    "filters": [{"protocol": "TCP", "localIPAddress": "10.0.0.1",
                 "remoteIPAddress": "10.0.0.2", "localPort": "80", "remotePort": "443"}],
    "captureSettings": {"fileCount": 3, "fileSizeInBytes": 100000,
                        "sessionTimeLimitInSeconds": 60},
    "continuousCapture": None, "interfaces": ["eth0"],
}


def _deep(depth: int, leaf: Callable[[Any], Any]) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = leaf(value)
    return value


def _random_text(rng: random.Random, alphabet: str, length: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(length))


# Characters of the classes that have fooled parsers: digits int() takes but are not ASCII
# (fullwidth, Arabic-Indic, Devanagari), digits isdigit() takes but int() does not
# (superscripts), controls, format characters (RTL override, zero width), a lone surrogate.
UNICODE_DIGITS = "\uff10\uff18\u0660\u0668\u0966\u096e"
SUPERSCRIPTS = "\u00b2\u00b3\u00b9\u2070\u2074\u2089"
CONTROLS = "\x00\x01\x07\x1b\x7f\x85\x9f"
FORMATS = "\u202e\u200b\u2066\ufeff"
ODD = "\ud800\U0001f600\ue000\u3000"


def _classes(rng: random.Random) -> Dict[str, List[Any]]:
    """Hostile values by class (none of them blank, none valid for any field's rule)."""
    return {
        "types": [True, False, 0.5, float("nan"), float("inf"), float("-inf"), 1e308,
                  b"80", object(), ("80",), {"80"}],
        "unicode": ["\u00b2", "\uff18\uff10", "\u0668\u0660", "1-\u00b2", "\u202e80",
                    "\u200b443", "\ufeffTCP", "\ud800", "10.0.0.\u0661", "\U0001f600"] +
                   [_random_text(rng, UNICODE_DIGITS + SUPERSCRIPTS + FORMATS + ODD,
                                 rng.randrange(1, 12)) for _ in range(20)],
        "control": ["\x00", "8\x000", "a\x00b.cap", "6\n0", "x\x1b[31my", "1\x7f",
                    "10.0.0.1\x00", "\x85"] +
                   [_random_text(rng, CONTROLS + "ab1", rng.randrange(2, 10)) + "\x00"
                    for _ in range(20)],
        "huge": ["9" * 10 ** 6, "a" * (1 << 20), ";" * (1 << 20), "1;" * (1 << 19),
                 "-" * (1 << 20), "1-" * (1 << 19), "[" * (1 << 20), "\u00b2" * (1 << 20)],
        "numbers": [-1, 2 ** 64, 10 ** 5000, 1 << 3_400_000, -(10 ** 30)],
        "number-text": ["-1", "99999999999999999999999", "1e3", "0x50", "+80", "NaN",
                        "Infinity", "-Infinity"],
        "brackets": ["[", "]", "{}", "[::1", "http://[::1", "https://[::1]x/c/b", "{\"a\":1}"],
        "nesting": [[], [[]], {}, {"a": {"b": {}}}, _deep(100_000, lambda v: [v]),
                    _deep(100_000, lambda v: {"x": v}), [0] * 1_000_000],
        "lists": [["80"], [80], ["TCP"], ["start"], [None], ["10.0.0.1"], [{"a": 1}]],
    }


ALL = ("types", "unicode", "control", "huge", "numbers", "number-text", "brackets", "nesting",
       "lists")
NOT_A_STRING = ("types", "numbers", "nesting", "lists")
# (where the value goes, the problem path, the field's codes, the classes that break its rule)
FIELDS: List[Tuple[Tuple[Any, ...], str, Set[int], Sequence[str]]] = [
    (("name",), "name", {100}, ("types", "unicode", "control", "huge", "numbers", "brackets",
                                "nesting", "lists")),
    (("action",), "action", {108}, ALL),
    (("target",), "target", {100}, ("types", "unicode", "control", "huge", "numbers",
                                    "nesting", "lists")),
    (("bytesToCapturePerPacket",), "bytesToCapturePerPacket", {105}, ALL),
    (("totalBytesPerSession",), "totalBytesPerSession", {105}, ALL),
    (("timeLimitInSeconds",), "timeLimitInSeconds", {105}, ALL),
    (("storageLocation",), "storageLocation", {106},
     ("unicode", "control", "huge", "numbers", "number-text", "brackets", "lists")),
    (("storageLocation", "storagePath"), "storageLocation.storagePath", {107}, ALL),
    (("storageLocation", "filePath"), "storageLocation.filePath", {106}, ALL),
    (("filters",), "filters", {100}, ("types", "unicode", "control", "huge", "numbers",
                                      "number-text", "brackets", "lists")),
    (("filters", 0), "filters[0]", {100}, ("types", "unicode", "control", "huge", "numbers",
                                           "number-text", "brackets", "lists")),
    (("filters", 0, "protocol"), "filters[0].protocol", {101}, ALL),
    (("filters", 0, "localIPAddress"), "filters[0].localIPAddress", {102, 104}, ALL),
    (("filters", 0, "remoteIPAddress"), "filters[0].remoteIPAddress", {102, 104}, ALL),
    (("filters", 0, "localPort"), "filters[0].localPort", {103, 104}, ALL),
    (("filters", 0, "remotePort"), "filters[0].remotePort", {103, 104}, ALL),
    (("continuousCapture",), "continuousCapture", {100},
     ("unicode", "control", "huge", "numbers", "number-text", "brackets", "nesting", "lists")),
    (("captureSettings",), "captureSettings", {105},
     ("unicode", "control", "huge", "numbers", "number-text", "brackets", "lists")),
    (("captureSettings", "fileCount"), "captureSettings.fileCount", {105}, ALL),
    (("captureSettings", "fileSizeInBytes"), "captureSettings.fileSizeInBytes", {105}, ALL),
    (("captureSettings", "sessionTimeLimitInSeconds"),
     "captureSettings.sessionTimeLimitInSeconds", {105}, ALL),
    (("interfaces",), "interfaces", {100},
     ("types", "unicode", "control", "huge", "numbers", "number-text", "brackets")),
    (("interfaces", 0), "interfaces", {100}, ("types", "unicode", "control", "huge",
                                              "numbers", "nesting", "lists")),
    (("properties",), "properties", {100},
     ("types", "unicode", "control", "huge", "numbers", "number-text", "brackets", "lists")),
]
# The ring's own path: localPath is only read with continuousCapture.
RING_FIELDS = [(("storageLocation", "localPath"), "storageLocation.localPath", {106}, ALL)]


def _base(ring: bool) -> Dict[str, Any]:
    settings = json.loads(json.dumps(BASE))
    if ring:
        settings["continuousCapture"] = True
        settings["storageLocation"] = {"storagePath": BASE["storageLocation"]["storagePath"],
                                       "localPath": "r.cap"}
    return settings


def _place(settings: Dict[str, Any], where: Tuple[Any, ...], value: Any) -> Dict[str, Any]:
    holder: Any = settings
    for step in where[:-1]:
        holder = holder[step]
    holder[where[-1]] = value
    return settings


def _cases() -> Iterator[Tuple[str, Tuple[Any, ...], str, Set[int], Any, bool]]:
    classes = _classes(random.Random(SEED))
    for fields, ring in ((FIELDS, False), (RING_FIELDS, True)):
        for where, path, codes, kinds in fields:
            for kind in kinds:
                for n, value in enumerate(classes[kind]):
                    yield f"{path}/{kind}[{n}]", where, path, codes, value, ring


def _parse_error(label: str, settings: Any, sas_token: object) -> CaptureSettingsError:
    started = time.monotonic()
    try:
        parse_capture_settings(settings, capture_root="/var/captures", sas_token=sas_token)
    except CaptureSettingsError as exc:
        error = exc
    else:
        raise AssertionError(f"{label}: accepted")
    elapsed = time.monotonic() - started
    assert elapsed < MAX_SECONDS, f"{label}: took {elapsed:.2f} s"
    assert SECRET not in error.message and "sig=" not in error.message, f"{label}: SAS shown"
    assert len(error.message) < MAX_MESSAGE, f"{label}: message of {len(error.message)} chars"
    return error


def _under(path: str, field: str) -> bool:
    return path == field or path.startswith((field + ".", field + "["))


def test_base_settings_are_valid_and_keep_the_token_out_of_repr():
    for ring in (False, True):
        request = parse_capture_settings(_base(ring), sas_token=SAS)
        assert request.sas_token == SAS and SECRET not in repr(request)


def test_every_field_refuses_hostile_values_with_its_own_code():
    failures = []
    count = 0
    for label, where, path, codes, value, ring in _cases():
        count += 1
        error = _parse_error(label, _place(_base(ring), where, value), SAS)
        paths = [p for p, _ in error.problems]
        if not paths or not all(_under(p, path) for p in paths):
            failures.append(f"{label}: problems at {paths}")
        elif not set(error.codes) <= codes:
            failures.append(f"{label}: codes {error.codes}, expected {sorted(codes)}")
    assert count > 1500, f"only {count} cases: the generator lost classes"
    assert not failures, f"{len(failures)} of {count}: " + "; ".join(failures[:10])


def test_hostile_values_inside_an_arm_envelope_name_the_properties_path():
    classes = _classes(random.Random(SEED + 1))
    for kind in ("unicode", "huge", "nesting"):
        for n, value in enumerate(classes[kind]):
            settings = {"name": "fuzz1", "properties": {
                "storageLocation": {"filePath": "x.cap"}, "timeLimitInSeconds": value}}
            error = _parse_error(f"properties/{kind}[{n}]", settings, SAS)
            assert [p for p, _ in error.problems] == ["properties.timeLimitInSeconds"], \
                f"{kind}[{n}]: {[p for p, _ in error.problems]}"
            assert error.codes == [105], f"{kind}[{n}]: {error.codes}"


def test_hostile_sas_tokens_are_refused_without_being_shown():
    classes = _classes(random.Random(SEED + 2))
    count = 0
    for kind in ("types", "unicode", "control", "huge", "numbers", "nesting", "lists"):
        for n, value in enumerate(classes[kind]):
            token = SAS + value if isinstance(value, str) else value
            error = _parse_error(f"storageSasToken/{kind}[{n}]", _base(False), token)
            count += 1
            assert [p for p, _ in error.problems] == ["storageSasToken"], error.problems[:3]
            assert error.codes == [107], f"{kind}[{n}]: {error.codes}"
    assert count > 40, count


def test_hostile_top_level_values_and_keys():
    classes = _classes(random.Random(SEED + 3))
    for kind in ("types", "unicode", "huge", "numbers", "lists"):
        for n, value in enumerate(classes[kind]):
            error = _parse_error(f"packetCapture/{kind}[{n}]", value, SAS)
            assert [p for p, _ in error.problems] == ["packetCapture"], error.problems[:3]
            assert error.codes == [100]
    for n, key in enumerate(["\x00", "a" * (1 << 20), "\u00b2", "name\n", 5, ("a",), None,
                             "\ud800", "storage\u200bLocation"]):
        settings = _base(False)
        settings[key] = 1
        error = _parse_error(f"key[{n}]", settings, SAS)
        assert len(error.problems) == 1 and error.codes == [100], error.problems
        path, message = error.problems[0]
        assert len(path) <= 80 and path.isprintable() and "unknown field" in message, path
