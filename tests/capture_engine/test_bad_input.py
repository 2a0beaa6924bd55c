"""Bad input, one corpus: each case ends in a specific code and a clear message."""
from __future__ import annotations

import json

import pytest

from capture_engine import pcaplib
from capture_engine.errors import CaptureError, CaptureNotFoundError, CaptureSettingsError
from capture_engine.session import delete_capture_files
from capture_engine.settings import parse_capture_settings
from tests.capture_engine import traffic
from tests.capture_engine.session_util import start_session

GOOD = {"name": "bad1", "storageLocation": {"filePath": "x.cap"},
        "filters": [{"protocol": "TCP", "remotePort": "443"}]}


def _with(**changes):
    settings = json.loads(json.dumps(GOOD))
    settings.update(changes)
    return settings


def _filter(**fields):
    return _with(filters=[{"protocol": "UDP", "localPort": "53"}, fields])


SETTINGS_CASES = [
    ("unknown-protocol", _filter(protocol="ICMP"), 101, "filters[1].protocol"),
    ("malformed-address", _filter(localIPAddress="10.0.0"), 102, "filters[1].localIPAddress"),
    ("malformed-ipv6", _filter(remoteIPAddress="fd00::zz"), 102, "filters[1].remoteIPAddress"),
    ("malformed-port", _filter(remotePort="http"), 103, "filters[1].remotePort"),
    ("malformed-range", _filter(localPort="80-90-100"), 104, "filters[1].localPort"),
    ("malformed-list", _filter(localPort="80;;90"), 104, "filters[1].localPort"),
    ("reversed-address-range", _filter(localIPAddress="10.0.0.9-10.0.0.1"), 104,
     "filters[1].localIPAddress"),
    ("reversed-port-range", _filter(remotePort="90-80"), 104, "filters[1].remotePort"),
    ("port-over-65535", _filter(localPort="70000"), 103, "filters[1].localPort"),
    ("range-in-list", _filter(remotePort="80;90-100"), 104, "filters[1].remotePort"),
    ("two-ranges", _filter(remoteIPAddress="10.0.0.1-10.0.0.5,10.0.0.9-10.0.0.12"), 104,
     "filters[1].remoteIPAddress"),
    ("families-never-match", _filter(localIPAddress="10.0.0.1", remoteIPAddress="fd00::1"),
     102, "filters[1]"),
    ("negative-snaplen", _with(bytesToCapturePerPacket=-1), 105, "bytesToCapturePerPacket"),
    ("over-limit-bytes", _with(totalBytesPerSession=4_294_967_296), 105,
     "totalBytesPerSession"),
    ("tiny-byte-cap", _with(totalBytesPerSession=30), 105, "totalBytesPerSession"),
    ("negative-time", _with(timeLimitInSeconds=-5), 105, "timeLimitInSeconds"),
    ("over-limit-time", _with(timeLimitInSeconds=18_001), 105, "timeLimitInSeconds"),
    ("time-not-a-number", _with(timeLimitInSeconds="soon"), 105, "timeLimitInSeconds"),
    ("over-limit-file-count", _with(continuousCapture=True, storageLocation={
        "localPath": "r.cap"}, captureSettings={"fileCount": 10_001}), 105,
     "captureSettings.fileCount"),
    ("over-limit-session-time", _with(continuousCapture=True, storageLocation={
        "localPath": "r.cap"}, captureSettings={"sessionTimeLimitInSeconds": 604_801}), 105,
     "captureSettings.sessionTimeLimitInSeconds"),
    ("file-not-cap", _with(storageLocation={"filePath": "/var/captures/x.pcap"}), 106,
     "storageLocation.filePath"),
    ("file-outside-root", _with(storageLocation={"filePath": "/tmp/x.cap"}), 106,
     "storageLocation.filePath"),
    ("file-climbs-out", _with(storageLocation={"filePath": "../x.cap"}), 106,
     "storageLocation.filePath"),
    ("file-path-with-continuous", _with(continuousCapture=True), 106,
     "storageLocation.filePath"),
    ("no-destination", _with(storageLocation={}), 106, "storageLocation"),
    ("storage-not-url", _with(storageLocation={"storagePath": "not a url"}), 107,
     "storageLocation.storagePath"),
    ("storage-not-http", _with(storageLocation={"storagePath": "ftp://host/c/x.cap"}), 107,
     "storageLocation.storagePath"),
    ("unknown-action", _with(action="pause"), 108, "action"),
    ("missing-name", {k: v for k, v in GOOD.items() if k != "name"}, 100, "name"),
    ("unknown-field", _with(timeLimitInSecond=60), 100, "timeLimitInSecond"),
]


@pytest.mark.parametrize("settings,code,field", [c[1:] for c in SETTINGS_CASES],
                         ids=[c[0] for c in SETTINGS_CASES])
def test_bad_settings_name_the_field_with_a_code(tmp_path, settings, code, field):
    with pytest.raises(CaptureSettingsError) as caught:
        parse_capture_settings(settings, capture_root="/var/captures")
    error = caught.value
    assert error.code == code, f"code {error.code}, expected {code}: {error.message}"
    assert [f for f, _ in error.problems] == [field], \
        f"expected exactly one problem at {field}, got {error.problems}"
    assert field in error.message and "Traceback" not in error.message


def test_every_problem_is_reported_at_once():
    settings = _with(timeLimitInSeconds=-1, action="pause",
                     filters=[{"protocol": "ICMP", "localPort": "99999"}],
                     storageLocation={"filePath": "/etc/passwd"})
    with pytest.raises(CaptureSettingsError) as caught:
        parse_capture_settings(settings)
    fields = {f for f, _ in caught.value.problems}
    assert fields == {"timeLimitInSeconds", "action", "filters[0].protocol",
                      "filters[0].localPort", "storageLocation.filePath"}, fields
    assert sorted(caught.value.codes) == [101, 103, 105, 106, 108], caught.value.codes


def _runtime_unknown_interface(lab, tmp_path, _request):
    request = parse_capture_settings(_with(interfaces=["nosuch0"]), capture_root=str(tmp_path))
    running = start_session(lab, request, "libpcap")
    return running.finish().querystatus()


def _runtime_expired_sas(lab, tmp_path, pytest_request):
    azurite = pytest_request.getfixturevalue("azurite")
    path, token = azurite.expired_blob_sas_uri("captures", "expired.cap").split("?", 1)
    request = parse_capture_settings(_with(storageLocation={"storagePath": path}),
                                     capture_root=str(tmp_path))
    running = start_session(lab, request, "rawsocket", sas_token=token)
    running.stop.set()
    status = running.finish().querystatus()
    assert status["localPath"] and status["localPath"] in status["errorMessage"], status
    assert token.split("sig=")[1][:10] not in json.dumps(status), "SAS leaked"
    return status


def _runtime_disk_full(lab, tmp_path, pytest_request):
    root = pytest_request.getfixturevalue("tiny_fs")
    request = parse_capture_settings(_with(filters=[]), capture_root=root)
    running = start_session(lab, request, "libpcap")
    traffic.blast(lab, 600, 1000, 7002, 0.0005)
    status = running.finish().querystatus()
    assert status["stopReason"] == "DiskFull" and status["packetsCaptured"] > 0, status
    return status


RUNTIME_CASES = [
    ("unknown-interface", _runtime_unknown_interface, 110, "CaptureFailed"),
    ("expired-sas", _runtime_expired_sas, 141, "StorageFailed"),
    ("disk-full", _runtime_disk_full, 130, "LocalFileFailed"),
]


@pytest.mark.root
@pytest.mark.parametrize("scenario,code,capture_error", [c[1:] for c in RUNTIME_CASES],
                         ids=[c[0] for c in RUNTIME_CASES])
def test_run_time_failures_end_in_a_coded_error_status(lab, tmp_path, request, scenario,
                                                       code, capture_error):
    status = scenario(lab, tmp_path, request)
    assert status["packetCaptureStatus"] == "Error", status
    assert status["errorCode"] == code and status["packetCaptureError"] == [capture_error], \
        status
    assert status["errorMessage"], status


def test_delete_of_a_capture_without_files_is_not_found(tmp_path):
    request = parse_capture_settings(_with(action="delete"), capture_root=str(tmp_path))
    with pytest.raises(CaptureNotFoundError) as caught:
        delete_capture_files(request)
    assert caught.value.code == 150 and "bad1" in caught.value.message
    (tmp_path / "x.cap").write_bytes(b"pcap")  # its path, but not written by this capture
    with pytest.raises(CaptureNotFoundError):
        delete_capture_files(request)
    assert (tmp_path / "x.cap").read_bytes() == b"pcap", "delete removed a file it did not write"


def test_bad_tcpdump_expression_is_coded():
    with pytest.raises(CaptureError) as caught:
        pcaplib.compile_expression("tcp port eleventy", 65535)
    assert caught.value.code == 109 and "eleventy" in caught.value.message
