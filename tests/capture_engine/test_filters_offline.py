"""Every filter form: our BPF program vs tcpdump's expression on the same reference packets.

The reference is live traffic captured on the VM's NIC; a packet whose source MAC is the
NIC's was sent by the VM. Our program and tcpdump's live expression (`outbound`/`inbound`)
run in the kernel, each packet in its own direction; tcpdump -r, which cannot know the
direction, reads the file with the expression for each direction.
"""
from __future__ import annotations

from typing import Iterator, List

import pytest

from capture_engine import pcaplib
from capture_engine.bpf import compile_filters
from capture_engine.errors import ProblemList
from capture_engine.filters import INBOUND, OUTBOUND, parse_filters, tcpdump_expression
from devtools.netns import unique_name
from tests.capture_engine import helpers
from tests.capture_engine.kernelrun import RECEIVED, SENT, KernelRun, kernel_run

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


@pytest.fixture(scope="module")
def runner() -> Iterator[KernelRun]:
    with kernel_run(unique_name("cpfo")) as run:
        yield run


@pytest.fixture(scope="module")
def sent_by_vm(lab) -> bytes:
    """The MAC address of the VM's NIC: the source of every packet the VM sends."""
    return bytes.fromhex(helpers.mac_address(lab.vm, lab.vm_if).replace(":", ""))


def _kept(runner: KernelRun, program: List[tuple], records: List[helpers.Record],
          mac: bytes) -> List[helpers.Record]:
    """The records the kernel keeps with `program`, each in its direction (cut to what the
    accept value keeps)."""
    lengths = runner.lengths(program, [r.data for r in records])
    kept = []
    for n, record in enumerate(records):
        length = lengths[SENT if record.data[6:12] == mac else RECEIVED][n]
        if length:
            kept.append(helpers.Record(record.ts_us, length, record.length,
                                       record.data[:length]))
    return kept


@pytest.mark.parametrize("form", list(FORMS))
@pytest.mark.parametrize("snaplen", [0, 34])
def test_program_matches_tcpdump_expression(live, runner, sent_by_vm, tmp_path, form, snaplen):
    problems = ProblemList()
    parsed = parse_filters(FORMS[form], "filters", problems)
    assert not problems, problems.problems
    reference = helpers.read_pcap(live.ref)
    expected = []
    for direction, mine in ((OUTBOUND, True), (INBOUND, False)):
        expression = tcpdump_expression(parsed, direction)
        kept = helpers.tcpdump_filter(live.ref, expression, str(tmp_path / f"{direction}.pcap"))
        expected += [r for r in kept if (r.data[6:12] == sent_by_vm) == mine]
    if form != "matches-nothing":
        assert expected, f"{form}: tcpdump {tcpdump_expression(parsed)!r} matches nothing"
        assert len(expected) < len(reference) or form in ("no-filter", "protocol-all"), \
            f"{form}: {tcpdump_expression(parsed)!r} matches everything: weak case"
    expected = [helpers.Record(r.ts_us, min(r.caplen, snaplen or r.caplen), r.length,
                               r.data[:snaplen or None]) for r in expected]
    ours = _kept(runner, compile_filters(parsed, snaplen), reference, sent_by_vm)
    assert helpers.keys(ours) == helpers.keys(expected), (
        f"{form} ({tcpdump_expression(parsed)!r}): ours {len(ours)} packets, tcpdump "
        f"{len(expected)}")
    live_expression = pcaplib.compile_expression(tcpdump_expression(parsed), snaplen or 262144)
    theirs = _kept(runner, live_expression, reference, sent_by_vm)
    assert helpers.keys(theirs) == helpers.keys(expected), (
        f"{form}: tcpdump's live expression {tcpdump_expression(parsed)!r} keeps "
        f"{len(theirs)} packets in the kernel, not {len(expected)}")
