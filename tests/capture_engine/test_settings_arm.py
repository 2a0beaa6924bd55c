"""ARM-style leniency: what real callers send (the seed's REST bodies) parses; typos still fail."""
from __future__ import annotations

import json
import pathlib
import string

import pytest

from capture_engine.errors import CaptureSettingsError
from capture_engine.settings import parse_capture_settings

VM = ("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/ContosoExampleRG/"
      "providers/Microsoft.Compute/virtualMachines/ContosoVM")

# The PUT body of the seed (000_b2d9b896869fe727.txt, "Pakketopname starten"), verbatim: a
# PowerShell here-string, so `${var}` is substituted and ARM reads the single-quoted JSON.
PUT_TEMPLATE = """
{
    'properties':  {
                       'target':  '/${targetUri}',
                       'bytesToCapturePerPacket':  '${bytestoCaptureperPacket}',
                       'totalBytesPerSession':  '${bytesPerSession}',
                       'timeLimitinSeconds':  '${captureTimeinSeconds}',
                       'storageLocation':  {
                                               'storageId':  '${storageId}',
                                               'storagePath':  '${storagePath}',
                                               'filePath':  '${localFilePath}'
                                           },
                       'filters':  [
                                       {
                                           'protocol':  '${protocol}',
                                           'localIPAddress':  '${localIP}',
                                           'localPort':  '${localPort}',
                                           'remoteIPAddress':  '${remoteIP}',
                                           'remotePort':  '${remotePort}'
                                       }
                                   ]
                   }
}
"""
# The seed's variables as written (PowerShell keeps "\\" as two characters).
SEED_VARIABLES = {
    "bytestoCaptureperPacket": "0", "bytesPerSession": "1073741824",
    "captureTimeinSeconds": "60", "localIP": "", "localPort": "", "remoteIP": "",
    "remotePort": "", "protocol": "", "targetUri": "", "storageId": "", "storagePath": "",
    "localFilePath": "c:\\\\temp\\\\packetcapture.cap",
}
# The same with the example values its comments give, and a Linux file path.
EXAMPLE_VARIABLES = dict(
    SEED_VARIABLES, localPort="80-120", remotePort="80", protocol="TCP",
    targetUri="/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/"
              "NetworkWatcherRG/providers/Microsoft.compute/virtualMachine/ContosoVM",
    storageId="/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/"
              "ContosoExampleRG/providers/Microsoft.Storage/storageAccounts/contosoexamplergdiag374",
    storagePath="https://mytestaccountname.blob.core.windows.net/capture/vm1Capture.cap",
    localFilePath="/var/captures/vm1Capture.cap")


def _put_body(variables: dict) -> dict:
    text = string.Template(PUT_TEMPLATE).substitute(variables)
    return json.loads(text.replace("'", '"'))


# The seed's "Alle pakketopnames weergeven" answer, verbatim but for the storagePath the page
# wraps over two lines (joined).
SEED_LIST = pathlib.Path(__file__).with_name("seed_000_packet_captures.json")
LISTED = json.loads(SEED_LIST.read_text())["value"]


def _error(settings) -> CaptureSettingsError:
    with pytest.raises(CaptureSettingsError) as caught:
        parse_capture_settings(settings, capture_root="/var/captures")
    return caught.value


def test_seed_put_body_with_example_values_parses():
    body = dict(_put_body(EXAMPLE_VARIABLES), name="TestPacketCapture5")
    request = parse_capture_settings(body)
    assert request.name == "TestPacketCapture5" and request.action == "start"
    assert request.target == "/" + EXAMPLE_VARIABLES["targetUri"], request.target
    assert request.time_limit == 60, "timeLimitinSeconds (PowerShell's spelling) is read"
    assert (request.bytes_per_packet, request.total_bytes) == (0, 1073741824)
    assert request.storage_path == EXAMPLE_VARIABLES["storagePath"]
    assert request.file_path == "/var/captures/vm1Capture.cap"
    (only,) = request.filters
    assert only.protocol == "TCP" and only.local_ip is None and only.remote_ip is None
    assert only.local_port.ranges == ((80, 120),) and only.remote_port.ranges == ((80, 80),)


def test_seed_put_body_as_written_fails_only_on_what_linux_cannot_do():
    error = _error(_put_body(SEED_VARIABLES))
    fields = {field: what for field, what in error.problems}
    assert set(fields) == {"name", "properties.storageLocation.filePath"}, error.problems
    assert "/var/captures/" in fields["properties.storageLocation.filePath"], fields
    assert "URL" in fields["name"] or "url" in fields["name"], \
        f"the name message should say REST takes it from the URL: {fields['name']}"


@pytest.mark.parametrize("index", [0, 1])
def test_seed_listed_captures_parse_with_a_linux_file_path(index):
    resource = json.loads(json.dumps(LISTED[index]))
    resource["properties"]["storageLocation"]["filePath"] = "/var/captures/packetcapture.cap"
    request = parse_capture_settings(resource)
    assert request.name == resource["name"]
    assert request.target == VM
    assert request.storage_path == resource["properties"]["storageLocation"]["storagePath"]
    assert request.time_limit == 60 and request.file_path == "/var/captures/packetcapture.cap"
    assert [f.unconstrained for f in request.filters] == [True], request.filters


@pytest.mark.parametrize("index", [0, 1])
def test_seed_listed_captures_as_written_fail_only_on_the_windows_path(index):
    error = _error(LISTED[index])
    assert [f for f, _ in error.problems] == ["properties.storageLocation.filePath"], \
        error.problems
    assert error.code == 106 and "Windows" in error.problems[0][1], error.message


GOOD = {"name": "arm1", "storageLocation": {"filePath": "x.cap"}}


def test_property_names_match_in_any_case():
    request = parse_capture_settings({
        "NAME": "arm1", "Action": "start", "timeLimitinSeconds": 30,
        "BytesToCapturePerPacket": "64", "STORAGELOCATION": {"FilePath": "x.cap"},
        "continuousCAPTURE": None, "Filters": [{"Protocol": "udp", "LOCALPORT": "53",
                                               "remoteipaddress": "10.0.0.1"}]})
    assert (request.name, request.time_limit, request.bytes_per_packet) == ("arm1", 30, 64)
    (only,) = request.filters
    assert only.protocol == "UDP" and only.local_port.ranges == ((53, 53),)
    assert only.remote_ip is not None


def test_ring_settings_match_in_any_case():
    request = parse_capture_settings({
        "name": "arm1", "continuousCapture": True, "storageLocation": {"localpath": "r.cap"},
        "captureSettings": {"FILECOUNT": 3, "fileSizeinBytes": 1000,
                            "SessionTimeLimitInSeconds": 99}})
    assert (request.ring.file_count, request.ring.file_size,
            request.ring.session_time_limit) == (3, 1000, 99)


def test_same_property_twice_in_different_case_is_refused():
    error = _error(dict(GOOD, timeLimitInSeconds=60, timelimitinseconds=70))
    assert [f for f, _ in error.problems] == ["timelimitinseconds"], error.problems
    assert "timeLimitInSeconds" in error.problems[0][1], error.problems


def test_read_only_resource_properties_are_accepted_and_ignored():
    request = parse_capture_settings({
        "name": "arm1", "id": "/subscriptions/x/packetCaptures/arm1", "etag": 'W/"1"',
        "type": "Microsoft.Network/networkWatchers/packetCaptures", "resourceId": "/x",
        "properties": {"provisioningState": "Succeeded", "resourceId": "/y",
                       "storageLocation": {"filePath": "x.cap", "storageId": "/s",
                                           "resourceId": "/z"},
                       "filters": [{"protocol": "TCP", "resourceId": "/f"}]}})
    assert request.name == "arm1" and request.file_path == "/var/captures/x.cap"
    assert request.filters[0].protocol == "TCP"


def test_target_is_kept_flat_or_in_properties():
    assert parse_capture_settings(dict(GOOD, target=VM)).target == VM
    assert parse_capture_settings(GOOD).target is None
    error = _error(dict(GOOD, target=["x"]))
    assert [f for f, _ in error.problems] == ["target"] and error.code == 100, error.problems


EMPTY_MEANS_UNSET = [
    ("protocol", {"filters": [{"protocol": "", "localPort": "22"}]},
     lambda r: r.filters[0].protocol == "Any"),
    ("localIPAddress", {"filters": [{"protocol": "TCP", "localIPAddress": ""}]},
     lambda r: r.filters[0].local_ip is None),
    ("bytesToCapturePerPacket", {"bytesToCapturePerPacket": ""},
     lambda r: r.bytes_per_packet == 0),
    ("timeLimitInSeconds", {"timeLimitInSeconds": ""}, lambda r: r.time_limit == 18_000),
    ("action", {"action": ""}, lambda r: r.action == "start"),
    ("target", {"target": ""}, lambda r: r.target is None),
    ("storagePath", {"storageLocation": {"storagePath": "", "filePath": "x.cap"}},
     lambda r: r.storage_path is None),
    ("continuousCapture", {"continuousCapture": ""}, lambda r: r.ring is None),
    ("captureSettings", {"captureSettings": ""}, lambda r: r.ring is None),
    ("interfaces", {"interfaces": ""}, lambda r: r.interfaces == ()),
]


@pytest.mark.parametrize("changes,check", [c[1:] for c in EMPTY_MEANS_UNSET],
                         ids=[c[0] for c in EMPTY_MEANS_UNSET])
def test_empty_string_means_not_set(changes, check):
    assert check(parse_capture_settings(dict(GOOD, **changes)))


TYPOS = [
    ("top-level", dict(GOOD, timeLimitInSecond=60), "timeLimitInSecond", "timeLimitInSeconds"),
    ("storage", dict(GOOD, storageLocation={"filePath": "x.cap", "storagePth": "x"}),
     "storageLocation.storagePth", "storagePath"),
    ("filter", dict(GOOD, filters=[{"remotPort": "80"}]), "filters[0].remotPort",
     "remotePort"),
    ("filter-probe", dict(GOOD, filters=[{"probe": "TCP"}]), "filters[0].probe", "protocol"),
    ("ring", dict(GOOD, captureSettings={"filecont": 3}), "captureSettings.filecont",
     "fileCount"),
    ("in-properties", {"name": "arm1", "properties": {"storageLocation": {"filePath": "x.cap"},
                                                      "totalBytesPerSesion": 100}},
     "properties.totalBytesPerSesion", "totalBytesPerSession"),
]


@pytest.mark.parametrize("settings,field,closest", [c[1:] for c in TYPOS],
                         ids=[c[0] for c in TYPOS])
def test_unknown_field_is_refused_with_the_closest_name(settings, field, closest):
    error = _error(settings)
    assert [f for f, _ in error.problems] == [field], error.problems
    assert f"did you mean '{closest}'" in error.problems[0][1], error.problems
    assert error.code == 100, error.message


def test_unknown_field_far_from_every_name_lists_the_known_ones():
    error = _error(dict(GOOD, zzzzzz=1))
    assert [f for f, _ in error.problems] == ["zzzzzz"], error.problems
    assert "known:" in error.problems[0][1] and "storageLocation" in error.problems[0][1]


def test_same_field_at_top_level_and_in_properties_is_refused():
    error = _error({"name": "arm1", "timeLimitInSeconds": 5,
                    "properties": {"storageLocation": {"filePath": "x.cap"},
                                   "timeLimitInSeconds": 6}})
    assert [f for f, _ in error.problems] == ["properties.timeLimitInSeconds"], error.problems


def test_properties_must_be_an_object():
    error = _error(dict(GOOD, properties=["x"]))
    assert [f for f, _ in error.problems] == ["properties"], error.problems
