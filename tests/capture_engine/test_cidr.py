"""CIDR prefixes in localIPAddress/remoteIPAddress: parsed like tcpdump's `net`, matched exactly.

The kernel runs our program on crafted frames (the prefix's edges and their neighbours, sent
and received); libpcap's interpreter runs tcpdump's own `src net`/`dst net` expression, written
by hand here, on the same frames in the same direction: both must keep the same bytes.
"""
from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from typing import Iterator, List

import pytest

from capture_engine import pcaplib
from capture_engine.bpf import compile_filters
from capture_engine.errors import CaptureSettingsError, ProblemList
from capture_engine.filters import parse_filters, tcpdump_expression
from capture_engine.settings import parse_capture_settings
from devtools.netns import unique_name
from tests.capture_engine import craft
from tests.capture_engine.conftest import ROOT
from tests.capture_engine.kernelrun import RECEIVED, SENT, KernelRun, kernel_run

CLI = [sys.executable, "-m", "capture_engine"]


def _found(problems: ProblemList) -> list:
    return [(p.path, p.message, p.code) for p in problems.collected.found]


def _parse(value: str, field: str = "localIPAddress"):
    problems = ProblemList()
    parsed = parse_filters([{field: value}], "filters", problems)
    return parsed, problems


@pytest.mark.parametrize("text,ranges", [
    ("10.0.0.0/24", [("10.0.0.0", "10.0.0.255")]),
    ("10.0.0.7/32", [("10.0.0.7", "10.0.0.7")]),
    ("0.0.0.0/0", [("0.0.0.0", "255.255.255.255")]),
    ("fd00:199::/64", [("fd00:199::", "fd00:199::ffff:ffff:ffff:ffff")]),
    (" 10.0.0.0/24 ; 10.1.0.5; fd00:199::/127,", [("10.0.0.0", "10.0.0.255"),
                                                  ("10.1.0.5", "10.1.0.5"),
                                                  ("fd00:199::", "fd00:199::1")]),
])
def test_prefix_is_the_range_of_its_addresses(text, ranges):
    parsed, problems = _parse(text)
    assert not problems, _found(problems)
    want = tuple((ipaddress.ip_address(lo), ipaddress.ip_address(hi)) for lo, hi in ranges)
    assert parsed[0].local_ip is not None and parsed[0].local_ip.ranges == want


@pytest.mark.parametrize("text,words", [
    ("10.0.0.0/33", ["/33", "0 to 32"]),
    ("fd00:199::/129", ["/129", "0 to 128"]),
    ("10.0.0.1/24", ["host bits", "10.0.0.0/24"]),
    ("fd00:199::1/64", ["host bits", "fd00:199::/64"]),
    ("10.0.0.0/", ["prefix length"]),
    ("10.0.0.0/x", ["prefix length"]),
    ("10.0.0.0/255.255.255.0", ["prefix length"]),
    ("10.0.0.0/-1", ["range", "prefix"]),
    ("10.0.0.0/24/8", ["prefix length"]),
    ("10.0.0.0/24-10.0.1.0/24", ["range", "prefix"]),
    ("10.0.0.0-10.0.0.9/24", ["range", "prefix"]),
    ("nonsense/24", ["not an IP address"]),
])
def test_bad_prefix_is_refused_naming_the_field(text, words):
    parsed, problems = _parse(text, "remoteIPAddress")
    assert not parsed and len(problems) == 1, _found(problems)
    field, message, code = _found(problems)[0]
    assert field == "filters[0].remoteIPAddress", field
    assert code == 102, (code, message)
    for word in words:
        assert word in message, message


def test_settings_refuse_a_bad_prefix_with_code_102():
    settings = {"name": "c1", "storageLocation": {"filePath": "x.cap"},
                "filters": [{"protocol": "TCP", "localIPAddress": "10.199.0.1/16"}]}
    with pytest.raises(CaptureSettingsError) as caught:
        parse_capture_settings(settings)
    assert caught.value.code == 102, caught.value.message
    assert "filters[0].localIPAddress" in caught.value.message, caught.value.message


def test_prefix_renders_as_tcpdump_net():
    parsed, _ = _parse("10.199.4.0/22;fd00:199::/48")
    assert tcpdump_expression(parsed, "outbound") == \
        "(((ip src net 10.199.4.0/22 or ip6 src net fd00:199::/48)))"


def test_cli_prints_a_prefix_and_refuses_a_bad_one(tmp_path):
    env = {**os.environ, "PYTHONPATH": ROOT}
    done = subprocess.run(CLI + ["-d", "--remote-ip", "10.199.0.0/16"], cwd=str(tmp_path),
                          capture_output=True, timeout=30, env=env)
    assert done.returncode == 0, done.stderr.decode()
    assert "(outbound and ip dst net 10.199.0.0/16)" in done.stdout.decode(), done.stdout
    done = subprocess.run(CLI + ["-w", "x.cap", "--local-ip", "10.199.0.0/40"],
                          cwd=str(tmp_path), capture_output=True, timeout=30, env=env)
    err = done.stderr.decode()
    assert done.returncode == 2 and "error 102" in err and "localIPAddress" in err, err


# Each form with tcpdump's expression for a packet the VM sent / received, written by hand.
KERNEL_FORMS = {
    "v4-local-24": ([{"localIPAddress": "10.199.4.0/24"}],
                    "ip src net 10.199.4.0/24", "ip dst net 10.199.4.0/24"),
    "v4-remote-odd-prefix": ([{"protocol": "UDP", "remoteIPAddress": "10.199.8.0/21"}],
                             "udp and ip dst net 10.199.8.0/21",
                             "udp and ip src net 10.199.8.0/21"),
    "v6-local-64": ([{"localIPAddress": "fd00:199:5::/64", "remotePort": "443"}],
                    "(tcp or udp) and ip6 src net fd00:199:5::/64 and dst port 443",
                    "(tcp or udp) and ip6 dst net fd00:199:5::/64 and src port 443"),
    "v6-remote-odd-prefix": ([{"remoteIPAddress": "fd00:199:0:ab80::/57"}],
                             "ip6 dst net fd00:199:0:ab80::/57",
                             "ip6 src net fd00:199:0:ab80::/57"),
    "mixed-list": ([{"protocol": "TCP", "remoteIPAddress": "10.199.0.0/30;fd00:199::/126;"
                     "10.199.9.9"}],
                   "tcp and (dst net 10.199.0.0/30 or dst net fd00:199::/126 or "
                   "dst host 10.199.9.9)",
                   "tcp and (src net 10.199.0.0/30 or src net fd00:199::/126 or "
                   "src host 10.199.9.9)"),
    "local-and-remote": ([{"localIPAddress": "10.199.0.0/16", "remoteIPAddress": "0.0.0.0/1"}],
                         "src net 10.199.0.0/16 and dst net 0.0.0.0/1",
                         "dst net 10.199.0.0/16 and src net 0.0.0.0/1"),
}


@pytest.fixture(scope="module")
def runner() -> Iterator[KernelRun]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    with kernel_run(unique_name("of11c")) as run:
        yield run


def _libpcap_lengths(expression: str, frames: List[craft.Frame]) -> List[int]:
    program = pcaplib.make_program(pcaplib.compile_expression(expression, 262144))
    return [min(pcaplib.offline_filter(program, f.data, len(f.data)), len(f.data))
            for f in frames]


@pytest.mark.root
@pytest.mark.parametrize("form", list(KERNEL_FORMS))
def test_kernel_keeps_what_tcpdump_net_keeps(runner, form):
    raw, sent_expr, received_expr = KERNEL_FORMS[form]
    problems = ProblemList()
    filters = parse_filters(raw, "filters", problems)
    assert not problems, _found(problems)
    frames = list(craft.exact_matches(filters)) + craft.corpus(filters, 600, seed=len(form))
    frames = [f for f in frames if f.shape != "truncated"]  # tcpdump's order of tests differs
    ours = runner.lengths(compile_filters(filters, 0), [f.data for f in frames])
    for way, expression in ((SENT, sent_expr), (RECEIVED, received_expr)):
        want = _libpcap_lengths(expression, frames)
        wrong = [(f.label, got, exp) for f, got, exp in zip(frames, ours[way], want)
                 if got != exp]
        assert not wrong, f"{form} {way}: {len(wrong)} of {len(frames)} differ from " \
            f"tcpdump {expression!r}: {wrong[:4]}"
        kept = sum(1 for n in want if n)
        assert 0 < kept < len(frames), f"{form} {way}: tcpdump keeps {kept}: weak corpus"
