"""Crash points at the start of each phase of a check: reached in order, and armed they kill."""
from __future__ import annotations

import os

import pytest

from devtools.pathlab import CLOSED_PORT, PYTHON, ROOT, SERVER
from plumbing.crashpoints import ARM_VARIABLE, TRACE_VARIABLE, read_trace

pytestmark = pytest.mark.root


def run_cli(net, env: dict, *args: str):
    return net.client.run([PYTHON, "-m", "connectivity", *args, "--json"], timeout=60,
                          check=False, cwd=str(ROOT), env={**os.environ, **env})


def test_every_phase_of_a_check_reaches_its_crash_point_in_order(net, tmp_path):
    trace = str(tmp_path / "trace")
    done = run_cli(net, {TRACE_VARIABLE: trace}, f"https://{SERVER}/", "--probes", "1")
    assert done.returncode == 0, done.stderr[-2000:]
    names = [name for _, name in read_trace(trace)]
    phases = ["dns", "route", "connect", "tls", "request", "response", "hops"]
    assert names == [f"connectivity.check.{p}" for p in phases], names
    closed = str(tmp_path / "closed")
    run_cli(net, {TRACE_VARIABLE: closed}, SERVER, "--port", str(CLOSED_PORT), "--probes", "1")
    assert [n for _, n in read_trace(closed)][-1] == "connectivity.check.firewall", \
        "a failed probe makes the check read the firewall after the hops"


def test_an_armed_phase_kills_the_check_there(net, tmp_path):
    trace = str(tmp_path / "trace")
    done = run_cli(net, {TRACE_VARIABLE: trace, ARM_VARIABLE: "connectivity.check.request"},
                   f"http://{SERVER}/", "--probes", "2")
    assert done.returncode == -9 and not done.stdout, (done.returncode, done.stdout[:200])
    assert [n for _, n in read_trace(trace)][-1] == "connectivity.check.request"
