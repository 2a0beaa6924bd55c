"""The stub resolver against real DNS servers in the lab: truncation, garbage, evidence."""
from __future__ import annotations

import pytest

from connectivity import errors as E
from devtools import hostile_servers as H
from devtools.pathlab import SERVER

pytestmark = pytest.mark.root


def ctx(issue: dict) -> dict:
    return {k: v for pair in issue["context"] for k, v in pair.items()}


def dns_evidence(answer: dict) -> dict:
    found = [i for i in answer["issues"] if i["type"] == "DnsResolution"]
    assert found, f"expected a DnsResolution issue: {answer['issues']}"
    return ctx(found[0])


def test_truncated_udp_answer_falls_back_to_tcp_like_glibc(hostile):
    hostile.resolv(H.BIG_DNS)
    glibc = hostile.client.run(["getent", "ahostsv4", H.BIG_NAME], timeout=30, check=False)
    addresses = {line.split()[0] for line in glibc.stdout.splitlines() if line.strip()}
    assert len(addresses) == H.BIG_COUNT, f"glibc should resolve all records: {glibc.stderr}"
    code, answer = hostile.check(H.BIG_NAME, "--port", "80", "--probes", "2")
    assert (code, answer["connectionStatus"]) == (0, "Reachable"), answer["issues"]
    assert answer["hops"][-1]["address"] == SERVER, "the first of the 500 A records is probed"


def test_garbage_reply_is_reported_as_malformed_not_as_no_address(hostile):
    hostile.resolv(H.GARBAGE_DNS)
    code, answer = hostile.check("web.cc.test", "--port", "80")
    assert code == E.DestinationUnresolvable.code, answer
    evidence = dns_evidence(answer)
    assert evidence["failure"] == "MalformedReply", evidence
    assert "malformed" in evidence["detail"] and H.GARBAGE_DNS in evidence["detail"], evidence
    assert "malformed" in evidence["server1"], evidence


def test_garbage_first_then_a_good_server_still_resolves(hostile):
    hostile.resolv(H.GARBAGE_DNS, SERVER)
    code, answer = hostile.check("web.cc.test", "--port", "80", "--probes", "1")
    assert (code, answer["connectionStatus"]) == (0, "Reachable"), answer["issues"]
