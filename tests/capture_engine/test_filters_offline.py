"""Every filter form: our BPF program vs tcpdump's expression on the same reference packets."""
from __future__ import annotations

import pytest

from capture_engine import pcaplib
from capture_engine.bpf import compile_filters
from capture_engine.errors import ProblemList
from capture_engine.filters import parse_filters, tcpdump_expression
from tests.capture_engine import helpers

pytestmark = pytest.mark.root

FORMS = {
    "no-filter": [],
    "protocol-tcp": [{"protocol": "TCP"}],
    "protocol-udp-lowercase": [{"protocol": "udp"}],
    "protocol-all": [{"protocol": "All"}],
    "local-ip-single": [{"localIPAddress": "10.199.1.10"}],
    "local-ip-range": [{"localIPAddress": "10.199.1.1-10.199.1.5"}],
    "local-ip-list": [{"localIPAddress": "10.199.1.1; 10.199.1.10,"}],
    "remote-ip-single": [{"remoteIPAddress": "10.199.1.3"}],
    "remote-ip-range": [{"remoteIPAddress": "10.199.1.3-10.199.1.200"}],
    "remote-ip-list": [{"remoteIPAddress": "10.199.1.2,10.199.1.4"}],
    "local-port-single": [{"localPort": "22"}],
    "local-port-range": [{"localPort": "40000-40003"}],
    "local-port-list": [{"localPort": "22;9000;6000"}],
    "remote-port-single": [{"remotePort": "443"}],
    "remote-port-range": [{"remotePort": "53-5001"}],
    "remote-port-list": [{"remotePort": "80;8080"}],
    "tcp-remote-port": [{"protocol": "TCP", "remotePort": "443"}],
    "udp-local-port-range": [{"protocol": "UDP", "localPort": "6000-6001"}],
    "tcp-local-ip-remote-port": [{"protocol": "TCP", "localIPAddress": "10.199.1.1",
                                  "remotePort": "80-8080"}],
    "all-fields": [{"protocol": "UDP", "localIPAddress": "10.199.1.1",
                    "remoteIPAddress": "10.199.1.2", "localPort": "40001",
                    "remotePort": "53"}],
    "ipv6-local-single": [{"localIPAddress": "fd00:199:1::1"}],
    "ipv6-remote-range": [{"remoteIPAddress": "fd00:199:1::2-fd00:199:1::ff"}],
    "ipv6-tcp-port": [{"protocol": "TCP", "remoteIPAddress": "fd00:199:1::3"}],
    "mixed-family-list": [{"remoteIPAddress": "10.199.1.4;fd00:199:1::2"}],
    "several-filters": [{"protocol": "TCP", "remotePort": "80"},
                        {"protocol": "UDP", "localIPAddress": "10.199.1.10"},
                        {"remoteIPAddress": "fd00:199:1::3"}],
    "matches-nothing": [{"protocol": "TCP", "remotePort": "1"}],
}


def _program(filters, snaplen):
    problems = ProblemList()
    parsed = parse_filters(filters, "filters", problems)
    assert not problems, problems.problems
    return parsed, pcaplib.make_program(compile_filters(parsed, snaplen))


@pytest.mark.parametrize("form", list(FORMS))
@pytest.mark.parametrize("snaplen", [0, 34])
def test_program_matches_tcpdump_expression(live, tmp_path, form, snaplen):
    parsed, program = _program(FORMS[form], snaplen)
    expression = tcpdump_expression(parsed)
    reference = helpers.read_pcap(live.ref)
    expected = helpers.tcpdump_filter(live.ref, expression, str(tmp_path / "expected.pcap"))
    if form != "matches-nothing":
        assert expected, f"{form}: tcpdump {expression!r} matches nothing: weak case"
        assert len(expected) < len(reference) or form in ("no-filter", "protocol-all"), \
            f"{form}: {expression!r} matches everything: weak case"
    ours = []
    for record in reference:
        accept = pcaplib.offline_filter(program, record.data, record.length)
        if accept:
            assert accept == (snaplen or 262144), f"{form}: accept value {accept}"
            ours.append(record)
    assert helpers.keys(ours) == helpers.keys(expected), (
        f"{form} ({expression!r}): ours {len(ours)} packets, tcpdump {len(expected)}")
