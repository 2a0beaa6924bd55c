"""Bad input: one corpus, each case a specific code and a message naming the field."""
from __future__ import annotations

import json

import pytest

from connectivity import errors as E
from connectivity.request import DEFAULT_PROBES, parse_request
from devtools.pathlab import PYTHON, ROOT, SERVER

TCP = {"destination": {"address": "10.199.2.2", "port": 80}}


def _headers(value: str) -> dict:
    return {"destination": {"address": "http://10.199.2.2/"}, "protocolConfiguration": {
        "HTTPConfiguration": {"headers": [{"name": "X-Price", "value": value}]}}}


# (id, settings, expected code, fragments the message must contain, needs the VM's network)
CORPUS = [
    ("empty-destination", {"destination": {"address": "", "port": 80}},
     E.InvalidDestination.code, ["destination.address", "is required"], False),
    ("missing-destination", {"protocol": "Tcp"}, E.InvalidDestination.code,
     ["destination"], False),
    ("destination-without-address", {"destination": {"port": 80}}, E.InvalidDestination.code,
     ["destination.address"], False),
    ("malformed-destination", {"destination": {"address": "bad host!", "port": 80}},
     E.InvalidDestination.code, ["destination.address", "'bad host!'"], False),
    ("ftp-url", {"destination": {"address": "ftp://x.example/", "port": 21}},
     E.InvalidDestination.code, ["destination.address", "scheme 'ftp'"], False),
    ("port-zero", {"destination": {"address": "10.199.2.2", "port": 0}},
     E.InvalidPort.code, ["destination.port", "1-65535"], False),
    ("port-too-big", {"destination": {"address": "10.199.2.2", "port": 70000}},
     E.InvalidPort.code, ["destination.port", "70000"], False),
    ("port-missing-tcp", {"destination": {"address": "10.199.2.2"}},
     E.InvalidPort.code, ["destination.port", "required"], False),
    ("source-port-text", {**TCP, "source": {"port": "80"}},
     E.InvalidPort.code, ["source.port"], False),
    ("url-secret-redacted", {"destination": {"address": "https://:9/x?sig=S3CR3T"}},
     E.InvalidDestination.code, ["destination.address", "sig=REDACTED"], False),
    ("unknown-protocol", {**TCP, "protocol": "Udp"},
     E.InvalidProtocol.code, ["protocol", "'Udp'"], False),
    ("probes-zero", {**TCP, "probes": 0}, E.InvalidProbeCount.code, ["probes", "1-100"], False),
    ("probes-101", {**TCP, "probes": 101}, E.InvalidProbeCount.code, ["probes", "101"], False),
    ("http-config-on-tcp", {**TCP, "protocolConfiguration": {"HTTPConfiguration": {
        "validStatusCodes": [200]}}}, E.HttpConfigurationNotAllowed.code,
     ["protocolConfiguration.HTTPConfiguration", "Tcp"], False),
    ("header-injection", {**TCP, "protocol": "Http", "protocolConfiguration": {
        "HTTPConfiguration": {"headers": [{"name": "X", "value": "a\r\nEvil: 1"}]}}},
     E.InvalidHttpConfiguration.code, ["headers[0]"], False),
    ("bad-status-code", {**TCP, "protocol": "Http", "protocolConfiguration": {
        "HTTPConfiguration": {"validStatusCodes": [200, 999]}}},
     E.InvalidHttpConfiguration.code, ["validStatusCodes"], False),
    ("ip-version", {**TCP, "preferredIPVersion": "IPv5"}, E.InvalidIPVersion.code,
     ["preferredIPVersion", "'IPv5'"], False),
    ("unknown-field", {**TCP, "probe": 5}, E.InvalidSettings.code, ["probe", "unknown"], False),
    ("not-an-object", ["10.199.2.2"], E.InvalidSettings.code, ["connectivityCheck"], False),
    # Passed validation, then raised UnicodeEncodeError in the probe or went out raw.
    ("header-value-not-latin-1", _headers("10 €"), E.InvalidHttpConfiguration.code,
     ["headers[0].value", "Latin-1", "U+20AC"], False),
    ("header-value-nul", _headers("a\x00b"), E.InvalidHttpConfiguration.code,
     ["headers[0].value", "control character U+0000"], False),
    ("header-value-vt", _headers("a\x0bb"), E.InvalidHttpConfiguration.code,
     ["headers[0].value", "control character U+000B"], False),
    ("header-value-nel", _headers("a\x85b"), E.InvalidHttpConfiguration.code,
     ["headers[0].value", "control character U+0085"], False),
    ("url-path-space", {"destination": {"address": "http://10.199.2.2/a b"}},
     E.InvalidDestination.code, ["destination.address", "space", "%20"], False),
    ("url-control-character", {"destination": {"address": "http://10.199.2.2/a\tb"}},
     E.InvalidDestination.code, ["destination.address", "U+0009"], False),
    ("non-ascii-host", {"destination": {"address": "http://bücher.example/"}},
     E.InvalidDestination.code, ["destination.address", "xn--bcher-kva.example"], False),
    ("unresolvable-host", {"destination": {"address": "nowhere.cc.test", "port": 80}},
     E.DestinationUnresolvable.code, ["nowhere.cc.test", "NXDOMAIN"], True),
    ("ipv6-without-ipv6", {"destination": {"address": "fd00:199:2::2", "port": 80}},
     E.IPv6Unavailable.code, ["IPv6", "no global IPv6 address"], True),
    ("ipv6-preferred-without-ipv6", {**{"destination": {"address": "web.cc.test", "port": 80}},
                                     "preferredIPVersion": "IPv6"},
     E.IPv6Unavailable.code, ["IPv6", "web.cc.test"], True),
]


def _params():
    for case_id, settings, code, fragments, needs_net in CORPUS:
        marks = [pytest.mark.root] if needs_net else []
        yield pytest.param(settings, code, fragments, needs_net, id=case_id, marks=marks)


@pytest.mark.parametrize("settings, code, fragments, needs_net", list(_params()))
def test_bad_input_gets_a_specific_code_and_clear_message(request, settings, code, fragments,
                                                          needs_net):
    if needs_net:
        # Discovered at run time: the CLI inside the client namespace, code as its exit status.
        net = request.getfixturevalue("net")
        done = net.client.run([PYTHON, "-m", "connectivity", "--settings", json.dumps(settings),
                               "--json"], timeout=60, check=False, cwd=str(ROOT))
        answer = json.loads(done.stdout)
        assert done.returncode == code, f"exit {done.returncode}, want {code}: {done.stderr}"
        assert answer["connectionStatus"] == "Unreachable" and answer["probesSent"] == 0
        message = json.dumps(answer["issues"])
    else:
        with pytest.raises(E.ConnectivityRequestError) as caught:
            parse_request(settings)
        assert caught.value.code == code, f"code {caught.value.code}, want {code}"
        message = caught.value.message
        assert len(caught.value.problems) == 1, caught.value.problems
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} missing from {message!r}"
    assert "Traceback" not in message and "S3CR3T" not in message


def test_every_problem_is_reported_at_once():
    with pytest.raises(E.ConnectivityRequestError) as caught:
        parse_request({"destination": {"address": "", "port": -1}, "protocol": "Smtp",
                       "probes": 500})
    fields = [path for path, _ in caught.value.problems]
    assert fields == ["protocol", "destination.address", "destination.port", "probes"], fields
    assert caught.value.code == E.InvalidSettings.code, "a mixture of problems is code 10"
    assert all(f in caught.value.message for f in fields), caught.value.message


def test_cli_bad_input_exits_with_the_code_and_no_traceback():
    import subprocess

    done = subprocess.run([PYTHON, "-m", "connectivity", "10.199.2.2", "--port", "0"],
                          cwd=str(ROOT), capture_output=True, text=True, timeout=60)
    assert done.returncode == E.InvalidPort.code, done.stderr
    assert "destination.port" in done.stderr and "Traceback" not in done.stderr


def test_defaults_and_url_forms():
    plain = parse_request(TCP)
    assert (plain.protocol, plain.probes, plain.port) == ("Tcp", DEFAULT_PROBES, 80)
    url = parse_request({"destination": {"address": "https://web.cc.test:8443/health?x=1"}})
    assert (url.protocol, url.host, url.port, url.http.path) == (
        "Https", "web.cc.test", 8443, "/health?x=1"), url
    http = parse_request({"destination": {"address": "web.cc.test"}, "protocol": "http"})
    assert (http.protocol, http.port, http.http.method) == ("Http", 80, "Get"), http


def test_non_ascii_url_path_and_query_are_percent_encoded_like_a_browser():
    request = parse_request({"destination": {"address": "http://web.cc.test/café/ä?q=ü&x=1#é"}})
    assert request.http.path == "/caf%C3%A9/%C3%A4?q=%C3%BC&x=1", request.http.path


def test_latin_1_header_values_are_accepted():
    request = parse_request(_headers("café, naïve\tok"))
    assert request.http.headers == (("X-Price", "café, naïve\tok"),), request.http


@pytest.mark.root
def test_non_ascii_path_reaches_the_server_percent_encoded(net):
    # The lab server answers 200 on /caf... only for exactly /caf%C3%A9, else 400.
    code, answer = net.check(f"http://{SERVER}/café", "--valid-status", "200", "--probes", "1")
    assert (code, answer["connectionStatus"]) == (0, "Reachable"), answer["issues"]
