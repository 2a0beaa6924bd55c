"""Odd values that used to crash the parser (code 1) now end in the field's own coded error."""
from __future__ import annotations

import json

import pytest

from capture_engine.errors import CaptureSettingsError
from capture_engine.settings import parse_capture_settings

GOOD = {"name": "odd1", "storageLocation": {"filePath": "x.cap"},
        "filters": [{"protocol": "TCP", "remotePort": "443"}]}
SAS = "sv=2022-11-02&ss=b&srt=o&sp=rwc&se=2030-01-01T00:00:00Z&sig=c2VjcmV0U2lnbmF0dXJl"


def _with(**changes):
    settings = json.loads(json.dumps(GOOD))
    settings.update(changes)
    return settings


def _problems(settings, **kwargs) -> CaptureSettingsError:
    with pytest.raises(CaptureSettingsError) as caught:
        parse_capture_settings(settings, capture_root="/var/captures", **kwargs)
    return caught.value


CASES = [
    ("superscript-port", _with(filters=[{"remotePort": "\u00b2"}]), 103, "filters[0].remotePort"),
    ("superscript-port-in-range", _with(filters=[{"localPort": "1-\u00b2"}]), 103,
     "filters[0].localPort"),
    ("fullwidth-port", _with(filters=[{"remotePort": "\uff18\uff10"}]), 103,
     "filters[0].remotePort"),
    ("fullwidth-limit", _with(timeLimitInSeconds="\uff16\uff10"), 105, "timeLimitInSeconds"),
    ("storage-bad-ipv6-host", _with(storageLocation={"storagePath": "http://[::1"}), 107,
     "storageLocation.storagePath"),
    ("storage-port-not-a-number", _with(storageLocation={
        "storagePath": "https://a.blob.core.windows.net:x/c/x.cap"}), 107,
     "storageLocation.storagePath"),
    ("storage-port-out-of-range", _with(storageLocation={
        "storagePath": "https://a.blob.core.windows.net:99999/c/x.cap"}), 107,
     "storageLocation.storagePath"),
    ("storage-junk-after-ipv6-host", _with(storageLocation={
        "storagePath": "https://[::1]x/c/x.cap"}), 107, "storageLocation.storagePath"),
    ("storage-newline", _with(storageLocation={
        "storagePath": "https://a.blob.core.windows.net/c/x\n.cap"}), 107,
     "storageLocation.storagePath"),
    ("nul-in-file-path", _with(storageLocation={"filePath": "/var/captures/a\x00.cap"}), 106,
     "storageLocation.filePath"),
    ("nul-in-local-path", _with(continuousCapture=True, storageLocation={
        "localPath": "r\x00.cap"}), 106, "storageLocation.localPath"),
    ("5000-digit-time-limit", _with(timeLimitInSeconds="9" * 5000), 105, "timeLimitInSeconds"),
    ("5000-digit-time-limit-int", _with(timeLimitInSeconds=10 ** 5000), 105,
     "timeLimitInSeconds"),
    ("5000-digit-port-int", _with(filters=[{"localPort": 10 ** 5000}]), 103,
     "filters[0].localPort"),
    ("name-trailing-newline", _with(name="80\n"), 100, "name"),
    ("interface-trailing-newline", _with(interfaces=["eth0\n"]), 100, "interfaces"),
    ("interface-nul", _with(interfaces=["eth\x000"]), 100, "interfaces"),
    ("windows-file-path", _with(storageLocation={"filePath": "c:\\temp\\x.cap"}), 106,
     "storageLocation.filePath"),
    ("ipv6-zone-index", _with(filters=[{"remoteIPAddress": "fe80::1%eth0"}]), 102,
     "filters[0].remoteIPAddress"),
]


@pytest.mark.parametrize("settings,code,field", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_odd_value_gets_the_fields_code(settings, code, field):
    error = _problems(settings)
    assert [f for f, _ in error.problems] == [field], \
        f"expected exactly one problem at {field}, got {error.problems}"
    assert error.code == code, f"code {error.code}, expected {code}: {error.message}"
    assert len(error.message) < 600, f"message too long ({len(error.message)} chars)"


def test_windows_file_path_names_the_linux_rule():
    error = _problems(_with(storageLocation={"filePath": "c:\\temp\\packetcapture.cap"}))
    message = error.problems[0][1]
    assert "/var/captures/" in message and "Windows" in message, message


def test_sas_token_is_kept_in_the_request_but_never_shown():
    request = parse_capture_settings(
        _with(storageLocation={"storagePath": "https://a.blob.core.windows.net/c/x.cap"}),
        sas_token="?" + SAS)
    assert request.sas_token == SAS, "the token (without its leading '?') is kept"
    assert "sig=" not in repr(request) and SAS not in repr(request), repr(request)


@pytest.mark.parametrize("token", [None, "", "  "], ids=["absent", "empty", "blank"])
def test_absent_or_empty_sas_token_is_none(token):
    assert parse_capture_settings(GOOD, sas_token=token).sas_token is None


BAD_TOKENS = [
    ("list", ["sig=abc"]),
    ("number", 12345),
    ("object", {"sig": "abc"}),
    ("bool", True),
    ("control-char", SAS.replace("&se", "\x00&se")),
    ("space-inside", SAS.replace("&se", " &se")),
    ("huge", "sig=" + "a" * (1 << 20)),
]


@pytest.mark.parametrize("token", [t[1] for t in BAD_TOKENS], ids=[t[0] for t in BAD_TOKENS])
def test_bad_sas_token_is_a_storage_error_that_does_not_echo_it(token):
    error = _problems(GOOD, sas_token=token)
    assert [f for f, _ in error.problems] == ["storageSasToken"], error.problems
    assert error.code == 107, error.message
    assert "sig=" not in error.message and "c2VjcmV0" not in error.message, error.message
    assert len(error.message) < 400, len(error.message)


def test_many_problems_keep_every_problem_but_a_short_message():
    bad = {"protocol": "ICMP", "localIPAddress": "x", "remoteIPAddress": "y",
           "localPort": "http", "remotePort": "https"}
    error = _problems(_with(filters=[dict(bad) for _ in range(64)]))
    assert len(error.problems) == 320, len(error.problems)
    assert len(error.message) < 6000 and "300 more" in error.message, error.message[-300:]
