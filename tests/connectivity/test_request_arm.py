"""Real callers, verbatim: the Network Watcher REST examples and ARM's lenient reading of them."""
from __future__ import annotations

import ast
import json
import re

import pytest

from connectivity import errors as E
from connectivity.request import DEFAULT_PROBES, parse_request
from devtools.pathlab import HTTP_PORT, SERVER

# The PowerShell variables of every example in the seeds (001_7aeec8bbcb9891a7.txt lines
# 126-131, 242-247, 338-343, 425-430; the same in 002_4e83567b2c815fc3.txt lines 89-94, ...).
SOURCE_ID = ("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/ContosoRG/"
             "providers/Microsoft.Compute/virtualMachines/MultiTierApp0")
VM_ID = ("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/ContosoRG/"
         "providers/Microsoft.Compute/virtualMachines/Database0")

# seed 001_7aeec8bbcb9891a7.txt lines 132-143 (002_4e83567b2c815fc3.txt lines 95-106):
# "Check connectivity to a virtual machine".
VM_BODY = """{
  'source': {
    'resourceId': '${sourceResourceId}',
    'port': 0
  },
  'destination': {
    'resourceId': '${destinationAddress}',
    'port': ${destinationPort}
  }
}"""

# seed 001_7aeec8bbcb9891a7.txt lines 248-259, 344-355, 431-442 (002: 211-222, 307-318,
# 394-405): "Validate routing issues", "Check website latency", "Check ... storage endpoint".
ADDRESS_BODY = """{
  'source': {
    'resourceId': '${sourceResourceId}',
    'port': 0
  },
  'destination': {
    'address': '${destinationAddress}',
    'port': ${destinationPort}
  }
}"""


def here_string(template: str, **variables: str) -> dict:
    """What PowerShell's @"..."@ expands to, read as ARM reads it.

    ARM's JSON reader accepts the single-quoted strings of these examples; with no true/false/
    null in them, a Python literal is exactly the same document.
    """
    text = re.sub(r"\$\{(\w+)\}", lambda m: variables[m.group(1)], template)
    return ast.literal_eval(text)


def test_seed_vm_example_names_address_as_the_fix():
    body = here_string(VM_BODY, sourceResourceId=SOURCE_ID, destinationAddress=VM_ID,
                       destinationPort="0")
    with pytest.raises(E.ConnectivityRequestError) as caught:
        parse_request(body)
    assert caught.value.code == E.ResourceIdWithoutAddress.code, caught.value.message
    assert [p for p, _ in caught.value.problems] == ["destination.address"], caught.value.problems
    message = caught.value.message
    assert "resourceId" in message and "Database0" in message, message


@pytest.mark.parametrize("address, port, want", [
    ("13.107.21.200", "80", ("Tcp", "13.107.21.200", 80, None)),
    ("http://bing.com", "0", ("Http", "bing.com", 80, "/")),
    ("https://build2017nwdiag360.blob.core.windows.net/", "0",
     ("Https", "build2017nwdiag360.blob.core.windows.net", 443, "/")),
], ids=["routing", "website", "storage"])
def test_seed_address_examples_are_accepted(address, port, want):
    body = here_string(ADDRESS_BODY, sourceResourceId=SOURCE_ID, destinationAddress=address,
                       destinationPort=port)
    request = parse_request(body)
    path = request.http.path if request.http else None
    assert (request.protocol, request.host, request.port, path) == want, request
    assert request.source_resource_id == SOURCE_ID, "source.resourceId is echoed"
    assert (request.probes, request.source_port) == (DEFAULT_PROBES, None), request


@pytest.mark.root
def test_seed_website_example_with_port_zero_reaches_the_lab_server(net):
    body = here_string(ADDRESS_BODY, sourceResourceId=SOURCE_ID,
                       destinationAddress=f"http://{SERVER}/", destinationPort="0")
    code, answer = net.check("--settings", json.dumps({**body, "probes": 2}))
    assert (code, answer["connectionStatus"]) == (0, "Reachable"), answer["issues"]


@pytest.mark.root
def test_resource_ids_with_an_address_are_echoed_in_the_answer(net):
    body = here_string(VM_BODY, sourceResourceId=SOURCE_ID, destinationAddress=VM_ID,
                       destinationPort=str(HTTP_PORT))
    body["destination"]["address"] = SERVER
    code, answer = net.check("--settings", json.dumps({**body, "probes": 2}))
    assert (code, answer["connectionStatus"]) == (0, "Reachable"), answer["issues"]
    hops = answer["hops"]
    assert (hops[0]["type"], hops[0]["resourceId"]) == ("Source", SOURCE_ID), hops[0]
    assert (hops[-1]["type"], hops[-1]["resourceId"]) == ("Destination", VM_ID), hops[-1]


def test_property_names_are_matched_case_insensitively():
    request = parse_request({"Destination": {"ADDRESS": "http://10.199.2.2/x", "Port": 8080},
                             "PROTOCOL": "http", "preferredipversion": "ipv4", "Probes": 3,
                             "protocolconfiguration": {"httpConfiguration": {
                                 "Method": "GET", "VALIDSTATUSCODES": [200],
                                 "Headers": [{"Name": "X-A", "VALUE": "1"}]}}})
    assert (request.protocol, request.port, request.ip_version, request.probes) == (
        "Http", 8080, "IPv4", 3), request
    assert request.http.headers == (("X-A", "1"),) and request.http.valid_status_codes == (200,)


def test_read_only_resource_properties_are_accepted_and_ignored():
    request = parse_request({
        "id": "/subscriptions/0/resourceGroups/rg/providers/Microsoft.Network/networkWatchers/w",
        "name": "w", "etag": 'W/"00000000-0000-0000-0000-000000000000"',
        "type": "Microsoft.Network/networkWatchers", "provisioningState": "Succeeded",
        "destination": {"address": "10.199.2.2", "port": 80}})
    assert (request.host, request.port, request.protocol) == ("10.199.2.2", 80, "Tcp")


def test_an_empty_string_means_not_set():
    request = parse_request({"destination": {"address": "10.199.2.2", "port": 80,
                                             "resourceId": ""},
                             "source": {"port": "", "resourceId": ""}, "protocol": "",
                             "preferredIPVersion": "", "probes": "", "protocolConfiguration": ""})
    assert (request.protocol, request.ip_version, request.probes, request.source_port) == (
        "Tcp", None, DEFAULT_PROBES, None), request


@pytest.mark.parametrize("settings, field, suggestion", [
    ({"destination": {"address": "10.199.2.2", "port": 80}, "probe": 5}, "probe", "probes"),
    ({"destination": {"adress": "10.199.2.2", "port": 80}}, "destination.adress", "address"),
    ({"destination": {"address": "10.199.2.2", "port": 80}, "protocl": "Http"}, "protocl",
     "protocol"),
    ({"destination": {"address": "10.199.2.2", "port": 80}, "protocol": "Http",
      "protocolConfiguration": {"HTTPConfiguration": {"validStatusCode": [200]}}},
     "protocolConfiguration.HTTPConfiguration.validStatusCode", "validStatusCodes"),
    ({"destination": {"address": "10.199.2.2", "port": 80}, "protocol": "Http",
      "protocolConfiguration": {"HTTPConfig": {}}}, "protocolConfiguration.HTTPConfig",
     "HTTPConfiguration"),
    ({"destination": {"address": "10.199.2.2", "port": 80}, "source": {"prot": 1}},
     "source.prot", "port"),
], ids=["probe", "adress", "protocl", "validStatusCode", "HTTPConfig", "prot"])
def test_a_typo_is_refused_with_the_closest_name(settings, field, suggestion):
    with pytest.raises(E.ConnectivityRequestError) as caught:
        parse_request(settings)
    paths = [p for p, _ in caught.value.problems]
    assert field in paths, caught.value.problems
    assert f"did you mean `{suggestion}`?" in caught.value.message, caught.value.message


def test_the_same_field_twice_in_different_case_is_refused():
    with pytest.raises(E.ConnectivityRequestError) as caught:
        parse_request({"destination": {"address": "10.199.2.2", "port": 80}, "probes": 3,
                       "Probes": 50})
    assert caught.value.code == E.InvalidSettings.code, caught.value.message
    assert "probes" in caught.value.message and "twice" in caught.value.message


def test_port_zero_is_still_refused_for_tcp_without_a_url():
    with pytest.raises(E.ConnectivityRequestError) as caught:
        parse_request({"destination": {"address": "10.199.2.2", "port": 0}})
    assert caught.value.code == E.InvalidPort.code
    assert "destination.port" in caught.value.message and "1-65535" in caught.value.message
