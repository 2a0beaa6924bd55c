"""Filters the kernel will take at net.core.optmem_max=20480, selecting exactly tcpdump's packets.

Each test runs inside a network namespace whose optmem_max is 20,480 (the default before Linux
6.9); the programs run in that kernel (packet sockets on both ends of a veth pair, so every
frame passes once as sent by the VM and once as received, trimmed to the accept value) and in
libpcap's interpreter for the tcpdump expression of the same filters in that direction.
"""
from __future__ import annotations

import ctypes
import errno
import ipaddress
import random
import socket
import struct
from typing import Dict, Iterator, List, Sequence

import pytest

from capture_engine import pcaplib
from capture_engine.bpf import compile_filters
from capture_engine.errors import CaptureSettingsError, ProblemList
from capture_engine.filters import (
    INBOUND,
    OUTBOUND,
    CaptureFilter,
    parse_filters,
    tcpdump_expression,
)
from capture_engine.settings import parse_capture_settings
from devtools.netns import Namespace, unique_name
from tests.capture_engine import craft
from tests.capture_engine.kernelrun import RECEIVED, SENT, KernelRun

pytestmark = pytest.mark.root
OPTMEM = 20480
HOST_OPTMEM = "/proc/sys/net/core/optmem_max"


def _v4(count: int, seed: int) -> List[str]:
    rng = random.Random(seed)
    return [str(ipaddress.IPv4Address((10 << 24) | (199 << 16) | rng.randrange(1, 1 << 16)))
            for _ in range(count)]


def _v6(count: int, seed: int) -> List[str]:
    rng = random.Random(seed)
    base = int(ipaddress.IPv6Address("fd00:199::"))
    return [str(ipaddress.IPv6Address(base | rng.randrange(1, 1 << 80))) for _ in range(count)]


def _ports(count: int, seed: int) -> str:
    return ";".join(str(p) for p in random.Random(seed).sample(range(1, 65536), count))


SHARED_V6 = [f"fd00:199:7::{i:x}" for i in range(1, 65)]
FORMS: Dict[str, List[dict]] = {
    # The seed's examples: its PUT body with the values its comments give, and its listings.
    "seed-put-example": [{"protocol": "TCP", "localIPAddress": "", "localPort": "80-120",
                          "remoteIPAddress": "", "remotePort": "80"}],
    "seed-listed": [{"protocol": "Any", "localIPAddress": "", "localPort": "",
                     "remoteIPAddress": "", "remotePort": ""}],
    # Refused by the kernel before (485 and 442 instructions).
    "25-tcp-remote-port-filters": [{"protocol": "TCP", "remotePort": str(8000 + i)}
                                   for i in range(25)],
    "24-ipv6-list": [{"remoteIPAddress": ";".join(_v6(24, 1))}],
    "64-ipv4-list": [{"localIPAddress": ";".join(_v4(64, 2))}],
    "64-ipv6-list-random": [{"remoteIPAddress": ";".join(_v6(64, 3))}],
    "64-ipv6-list-shared-prefix": [{"localIPAddress": ";".join(SHARED_V6)}],
    "64-mixed-family-list": [{"remoteIPAddress": ";".join(_v4(32, 4) + _v6(32, 5))}],
    "64-local-ports-udp": [{"protocol": "UDP", "localPort": _ports(64, 6)}],
    "64-remote-ports-any": [{"remotePort": _ports(64, 7)}],
    "64-ports-and-64-ipv4": [{"protocol": "TCP", "remoteIPAddress": ";".join(_v4(64, 8)),
                              "remotePort": _ports(64, 9)}],
    "64-ports-and-64-ipv6": [{"protocol": "TCP", "localIPAddress": ";".join(_v6(64, 10)),
                              "localPort": _ports(64, 11)}],
    "ipv4-range-and-port-range": [{"localIPAddress": "10.199.3.7-10.199.200.9",
                                   "remotePort": "1000-2000"}],
    "ipv6-ranges": [{"localIPAddress": "fd00:199::3-fd00:199:ffff:ffff:ffff:ffff:ffff:fffe"},
                    {"protocol": "UDP", "remoteIPAddress": "fd00:199::10-fd00:199::1:0"}],
    "adjacent-ports": [{"localPort": "80;82;83;85"}],
    "top-port-range": [{"protocol": "Any", "remotePort": "65000-65535"}],
    "protocol-only-udp": [{"protocol": "UDP"}],
    "ipv6-protocol-and-address": [{"protocol": "TCP", "remoteIPAddress": "fd00:199::2"},
                                  {"protocol": "UDP", "localIPAddress": "fd00:199::1"}],
    "several": [{"protocol": "TCP", "remotePort": "80;443"},
                {"protocol": "UDP", "localIPAddress": "10.199.0.1"},
                {"remoteIPAddress": "fd00:199::2"},
                {"protocol": "Any", "localPort": "22"}],
}
# Too big at 20,480 bytes (256 unrelated IPv6 addresses), and past 4,096 instructions.
TOO_BIG = [{"remoteIPAddress": ";".join(_v6(64, 100 + n))} for n in range(4)]
OVER_4096 = [{"localIPAddress": ";".join(_v6(64, 100 + n)),
              "remoteIPAddress": ";".join(_v6(64, 200 + n))} for n in range(8)]


@pytest.fixture(scope="module")
def small_optmem() -> Iterator[Namespace]:
    """A namespace with optmem_max=20480 (per namespace on this kernel; else set globally,
    restored after)."""
    with open(HOST_OPTMEM) as source:
        host_before = source.read().strip()
    ns = Namespace(unique_name("cpbpf"))
    global_change = False
    try:
        ns.run(["sysctl", "-qw", f"net.core.optmem_max={OPTMEM}"])
        with open(HOST_OPTMEM) as source:
            global_change = source.read().strip() != host_before
        with ns.enter(), open(HOST_OPTMEM) as source:
            assert int(source.read()) == OPTMEM, "optmem_max not set in the namespace"
        yield ns
    finally:
        ns.close()
        if global_change:
            with open(HOST_OPTMEM, "w") as sink:
                sink.write(host_before)


def _settings(filters: List[dict]) -> dict:
    return {"name": "bpf1", "storageLocation": {"filePath": "x.cap"}, "filters": filters}


def _attach(sock: socket.socket, program: Sequence[tuple]) -> None:
    insns = b"".join(struct.pack("<HBBI", *insn) for insn in program)
    buffer = ctypes.create_string_buffer(insns, len(insns))
    sock.setsockopt(socket.SOL_SOCKET, 26, struct.pack("HL", len(program),
                                                       ctypes.addressof(buffer)))


@pytest.fixture(scope="module")
def runner(small_optmem: Namespace) -> KernelRun:
    return KernelRun(small_optmem)


def _tcpdump_lengths(filters: Sequence[CaptureFilter], snaplen: int,
                     frames: Sequence[craft.Frame], direction: str) -> List[int]:
    """What tcpdump keeps with the filters' expression for packets of `direction`. A frame cut
    after its IP header can only match filters without ports: tcpdump drops it as soon as an
    earlier filter reads a port; our program tests those filters first, so it is held to
    them alone."""
    whole = pcaplib.make_program(pcaplib.compile_expression(
        tcpdump_expression(filters, direction), snaplen))
    portless = [f for f in filters if not f.has_ports]
    cut = pcaplib.make_program(pcaplib.compile_expression(
        tcpdump_expression(portless, direction), snaplen)) if portless else None
    kept = []
    for f in frames:
        program = cut if f.shape == "truncated" else whole
        accept = pcaplib.offline_filter(program, f.data, len(f.data)) if program else 0
        kept.append(min(accept, len(f.data)))
    return kept


@pytest.mark.parametrize("form", list(FORMS))
def test_filter_parses_and_attaches_at_20480(small_optmem, form):
    with small_optmem.enter():
        request = parse_capture_settings(_settings(FORMS[form]))
        program = compile_filters(request.filters, 0)
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0) as sock:
            _attach(sock, [(0x06, 0, 0, 0)])  # libpcap attaches a reject-all filter first
            try:
                _attach(sock, program)
            except OSError as exc:
                pytest.fail(f"{form}: the kernel refused {len(program)} instructions: {exc}")


@pytest.mark.parametrize("snaplen", [0, 34])
@pytest.mark.parametrize("form", list(FORMS))
def test_kernel_keeps_exactly_what_tcpdump_keeps(runner, form, snaplen):
    problems = ProblemList()
    filters = parse_filters(FORMS[form], "filters", problems)
    assert not problems, problems.problems
    frames = list(craft.exact_matches(filters)) + craft.corpus(filters, 800, seed=len(form))
    ours = runner.lengths(compile_filters(filters, snaplen), [f.data for f in frames])
    expected = {way: _tcpdump_lengths(filters, snaplen or 262144, frames, direction)
                for way, direction in ((SENT, OUTBOUND), (RECEIVED, INBOUND))}
    for way in (SENT, RECEIVED):
        wrong = [(f.label, got, want) for f, got, want in zip(frames, ours[way], expected[way])
                 if got != want]
        assert not wrong, f"{form}, {way}: {len(wrong)} of {len(frames)} frames differ " \
            f"(label, kernel, tcpdump): {wrong[:5]}"
        kept = sum(1 for n in expected[way] if n)
        assert 0 < kept < len(frames) or form == "seed-listed", \
            f"{form}, {way}: tcpdump keeps {kept} of {len(frames)}: a weak corpus"
    if any(f.has_endpoints for f in filters):
        assert expected[SENT] != expected[RECEIVED], \
            f"{form}: every frame is kept or dropped alike both ways: direction is not tested"


@pytest.mark.parametrize("filters,limit", [(TOO_BIG, f"{OPTMEM:,} bytes"),
                                           (OVER_4096, "allows 4096")],
                         ids=["over-optmem", "over-4096-instructions"])
def test_too_big_filter_is_refused_at_parse_with_how_to_shrink_it(small_optmem, filters,
                                                                 limit):
    with small_optmem.enter(), pytest.raises(CaptureSettingsError) as caught:
        parse_capture_settings(_settings(filters))
    error = caught.value
    assert [f for f, _ in error.problems] == ["filters"], error.problems
    assert error.code == 112, error.message
    message = error.problems[0][1]
    assert limit in message and "fewer" in message and "range" in message, message


def test_exposed_attach_refuses_with_the_coded_error(small_optmem):
    from capture_engine.attach import attach_filter, check_attachable
    from capture_engine.errors import FilterTooLargeError

    problems = ProblemList()
    program = compile_filters(parse_filters(TOO_BIG, "filters", problems), 0)
    with small_optmem.enter():
        with pytest.raises(FilterTooLargeError) as caught:
            check_attachable(program)
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0) as sock:
            with pytest.raises(FilterTooLargeError):
                attach_filter(sock, program)
            attach_filter(sock, compile_filters(parse_filters(
                FORMS["64-ipv6-list-random"], "filters", problems), 0))
    assert caught.value.code == 112 and "optmem_max" in caught.value.message
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        with pytest.raises(OSError) as other:
            attach_filter(sock, [(0x06, 0, 0, 0), (0xFFFF, 0, 0, 0)])  # not a valid opcode
        assert other.value.errno == errno.EINVAL and not isinstance(other.value,
                                                                      FilterTooLargeError)
