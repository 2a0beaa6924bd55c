"""CIDR prefixes in Network Watcher filters, at their edges: a length with a leading zero
(tcpdump reads /024 as octal, /20) and a length too long to be any number we keep."""
from __future__ import annotations

import pytest

from capture_engine.errors import CaptureError, ProblemList
from capture_engine.filters import parse_filters
from capture_engine.settings import parse_capture_settings
from tests.hunt4 import pcapng_craft as ng
from tests.hunt4.test_pcapng_input import _cli


def _problems(value: str) -> list[str]:
    problems = ProblemList()
    parse_filters([{"remoteIPAddress": value}], "filters", problems)
    return [f"{p.path}: {p.message} ({p.code})" for p in problems.collected.found]


@pytest.mark.parametrize("value", ["10.0.0.0/024", "fd00:199::/064", "0.0.0.0/00"])
def test_a_prefix_length_with_a_leading_zero_is_refused(value):
    """tcpdump's `net 10.0.0.0/024` is /20 (its numbers with a leading 0 are octal), Python's
    /24: either reading silently captures what the other would not."""
    found = _problems(value)
    assert len(found) == 1 and "(102)" in found[0] and "leading zero" in found[0], found
    assert found[0].startswith("filters[0].remoteIPAddress: "), found


def test_leading_zero_through_the_handler_settings_names_the_field():
    settings = {"name": "c", "filters": [{"localIPAddress": "10.199.0.0/016"}],
                "storageLocation": {"filePath": "/var/captures/x.cap"}}
    with pytest.raises(CaptureError) as caught:
        parse_capture_settings(settings, capture_root="/var/captures")
    assert caught.value.code == 102, caught.value.message
    assert "filters[0].localIPAddress" in caught.value.message, caught.value.message


def test_leading_zero_on_the_cli_is_a_usage_error(tmp_path):
    source = str(tmp_path / "in.pcapng")
    with open(source, "wb") as out:
        out.write(ng.sections("<", [["eth0"]]))
    done = _cli(["-r", source, "--remote-ip", "10.199.0.0/016"], str(tmp_path))
    err = done.stderr.decode()
    assert done.returncode == 2 and "error 102" in err and "remoteIPAddress" in err, err


def test_an_absurd_prefix_length_is_shown_as_given():
    """The message quotes the length given, not the number it was capped to."""
    found = _problems("10.0.0.0/99999999999999999999999")
    assert len(found) == 1 and "(102)" in found[0], found
    assert "/100000000000000000000" not in found[0], found


@pytest.mark.parametrize("value", ["10.0.0.0/0", "0.0.0.0/0", "::/0", "10.0.0.5/32",
                                   "fd00::1/128", "::ffff:10.0.0.0/104", " 10.0.0.0 / 8 "])
def test_edge_lengths_still_parse(value):
    found = _problems(value)
    assert (found == []) == (value != "10.0.0.0/0"), found


def test_a_packet_cut_before_its_ports_still_matches_an_address_filter():
    """The documented difference from tcpdump: its program rejects a packet outright once a
    port load runs past the end; ours tests the filters without ports first."""
    from capture_engine import pcaplib
    from capture_engine.bpf import compile_filters
    from capture_engine.filters import INBOUND, OUTBOUND, tcpdump_expression
    from tests.capture_engine import craft

    problems = ProblemList()
    parsed = parse_filters([{"protocol": "UDP", "remotePort": "80"},
                            {"remoteIPAddress": "0.0.0.0/1"}], "filters", problems)
    frame = craft.frame("10.199.5.128", "10.199.4.1", craft.UDP, 1, 80, "truncated")
    ours = pcaplib.make_program(compile_filters(parsed, 0, directional=False))
    sent, received = (tcpdump_expression(parsed, way) for way in (OUTBOUND, INBOUND))
    theirs = pcaplib.make_program(pcaplib.compile_expression(f"({sent}) or ({received})",
                                                             262144))
    assert pcaplib.offline_filter(ours, frame, len(frame)) > 0
    assert pcaplib.offline_filter(theirs, frame, len(frame)) == 0  # else update the docs
