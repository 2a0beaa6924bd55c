"""Hunt: a check the machine stalled past its deadline before any probe claims nothing."""
from __future__ import annotations

import socket

import pytest

from connectivity import errors as E
from connectivity.check import CheckSettings, run_check
from connectivity.request import ConnectivityRequest
from plumbing.clock import ManualClock


def _closed_port() -> int:
    """A loopback port nothing listens on: every probe to it is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.root
def test_a_check_stalled_past_its_deadline_before_any_probe_is_not_reachable() -> None:
    """Every read of the clock finds an hour gone (a VM paused, the worker SIGSTOPped): the
    deadline has passed before the first probe, none is sent. Nothing was verified, and the
    port is closed: the answer must not be Reachable/success."""
    request = ConnectivityRequest("127.0.0.1", _closed_port(), probes=3)
    result = run_check(request, clock=ManualClock(tick=3600.0),
                       settings=CheckSettings(discover_hops=False))
    assert result.probes_sent == 0, result
    assert (result.connection_status, result.succeeded) == ("Unreachable", False), \
        f"no probe sent, yet {result.connection_status} (code {result.status_code})"
    assert result.status_code == E.UNREACHABLE
    cut = [i for i in result.issues if "deadline was reached after 0 of 3" in i.detail()]
    assert cut, f"the cut-short warning is missing: {result.issues}"
