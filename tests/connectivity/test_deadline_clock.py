"""The check's deadline reads the injected clock: a test drives it without waiting for it."""
from __future__ import annotations

import socket

import pytest

from connectivity.check import CheckSettings, run_check
from connectivity.deadline import Deadline
from connectivity.request import ConnectivityRequest
from plumbing.clock import ManualClock


class StalledClock(ManualClock):
    """Every pause lasts an hour longer than asked: a machine stalled between probes."""

    def sleep(self, seconds: float) -> None:
        self.advance(seconds + 3600.0)


@pytest.fixture
def listener():
    """A TCP port on loopback that accepts (the kernel completes the handshake)."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    try:
        yield server.getsockname()[1]
    finally:
        server.close()


def test_deadline_expires_when_the_injected_clock_passes_it():
    clock = ManualClock()
    whole = Deadline.after(10.0, clock)
    share = whole.within(4.0)
    assert (whole.left(), share.left()) == (10.0, 4.0)
    clock.advance(5.0)
    assert share.expired and not whole.expired and whole.left() == 5.0
    clock.advance(5.0)
    with pytest.raises(socket.timeout):
        whole.wait()


@pytest.mark.root
def test_check_stops_probing_once_its_clock_passes_the_worst_case(listener):
    """The pause after the first probe moves the clock past the check's whole bound: the
    check ends cut short and says so, without waiting for the bound."""
    request = ConnectivityRequest("127.0.0.1", listener, probes=5)
    result = run_check(request, clock=StalledClock(), settings=CheckSettings(
        discover_hops=False))
    assert result.probes_sent == 1, f"{result.probes_sent} probes sent past the deadline"
    cut = [i for i in result.issues if "deadline was reached after 1 of 5" in i.detail()]
    assert cut, f"the cut-short warning is missing: {result.issues}"
