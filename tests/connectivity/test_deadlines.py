"""Hostile servers cannot stretch a check past its documented bound (README: Time bounds)."""
from __future__ import annotations

import json
import time

import pytest

from connectivity import errors as E
from devtools import hostile_servers as H
from devtools.pathlab import PYTHON, ROOT, SERVER, Path3

pytestmark = pytest.mark.root

# The README's worst case of a check: D + N x (P + 0.05 s) + H + L, where D is the DNS budget
# (0 for an IP literal), P the per-probe deadline, H hop discovery and L the local reads.
DNS_BUDGET, INTERVAL, HOPS, LOCAL = 6.0, 0.05, 4.0, 4.0
PROBE_DEADLINE = {"tcp": 1.0, "http": 3.0}
STARTUP = 5.0   # the CLI process itself: interpreter start and imports, on a loaded machine


def documented_bound(probes: int, kind: str, dns: bool) -> float:
    return (DNS_BUDGET if dns else 0.0) + probes * (PROBE_DEADLINE[kind] + INTERVAL) + HOPS + LOCAL


def timed_check(net: Path3, limit: float, *args: str) -> tuple[float, int, dict]:
    """Run the CLI in the client namespace; kill it at `limit` (that is a failure)."""
    started = time.monotonic()
    done = net.client.run([PYTHON, "-m", "connectivity", *args, "--json"], timeout=limit,
                          check=False, cwd=str(ROOT))
    elapsed = time.monotonic() - started
    assert not done.timed_out, f"check still running after {limit:.0f} s, killed: {args}"
    assert done.stdout.strip(), f"no JSON from the CLI: {done.stderr[-2000:]}"
    return elapsed, done.returncode, json.loads(done.stdout)


def detail_of(answer: dict, kind: str) -> str:
    for issue in answer["issues"]:
        if issue["type"] == kind:
            return {k: v for pair in issue["context"] for k, v in pair.items()}["detail"]
    raise AssertionError(f"no {kind} issue in {answer['issues']}")


HOSTILE_HTTP = [
    ("status-line-trickle", f"http://{SERVER}:{H.STATUS_TRICKLE}/", 1),
    ("status-line-trickle-2-probes", f"http://{SERVER}:{H.STATUS_TRICKLE}/", 2),
    ("header-trickle", f"http://{SERVER}:{H.HEADER_TRICKLE}/", 1),
    ("accepts-never-answers", f"http://{SERVER}:{H.SILENT}/", 1),
    ("tls-handshake-trickle", f"https://{SERVER}:{H.TLS_HANDSHAKE_TRICKLE}/", 1),
    ("tls-then-status-trickle", f"https://{SERVER}:{H.TLS_STATUS_TRICKLE}/", 1),
]


@pytest.mark.parametrize("url, probes", [pytest.param(u, n, id=i) for i, u, n in HOSTILE_HTTP])
def test_hostile_http_server_cannot_stretch_a_check(hostile, url, probes):
    bound = documented_bound(probes, "http", dns=False)
    elapsed, code, answer = timed_check(hostile, bound + 30, url, "--probes", str(probes))
    assert elapsed <= bound + STARTUP, f"{elapsed:.1f} s, documented bound {bound:.1f} s"
    assert (code, answer["connectionStatus"]) == (E.UNREACHABLE, "Unreachable"), answer
    assert (answer["probesSent"], answer["probesFailed"]) == (probes, probes), answer
    assert "deadline" in detail_of(answer, "NetworkError"), answer["issues"]


def test_slow_dns_server_ends_within_the_dns_budget(hostile):
    hostile.resolv(H.SLOW_DNS, timeout=2)
    elapsed, code, answer = timed_check(hostile, DNS_BUDGET + 30, "web.cc.test", "--port", "80")
    assert elapsed <= DNS_BUDGET + STARTUP, f"{elapsed:.1f} s for an unresolvable name"
    assert code == E.DestinationUnresolvable.code, answer
    assert "timeout" in detail_of(answer, "DnsResolution").lower(), answer["issues"]


def test_three_trickling_tcp_dns_servers_end_within_the_dns_budget(hostile):
    hostile.resolv(*H.TRICKLE_DNS, timeout=2)
    elapsed, code, answer = timed_check(hostile, DNS_BUDGET + 30, H.BIG_NAME, "--port", "80")
    assert elapsed <= DNS_BUDGET + STARTUP, f"{elapsed:.1f} s for an unresolvable name"
    assert code == E.DestinationUnresolvable.code, answer
    evidence = json.dumps(answer["issues"])
    assert "tcp" in evidence and "Timeout" in evidence, "the TCP fallback timed out: say so"


@pytest.mark.parametrize("settings, probes, kind, dns", [
    ({"destination": {"address": f"http://{SERVER}/"}, "probes": 1}, 1, "http", False),
    ({"destination": {"address": "web.cc.test", "port": 80}}, 10, "tcp", True),
    ({"destination": {"address": "https://web.cc.test/"}, "probes": 100}, 100, "http", True),
    ({"destination": {"address": SERVER}, "protocol": "Icmp", "probes": 5}, 5, "tcp", False),
], ids=["http-literal-1", "tcp-name-10", "https-name-100", "icmp-literal-5"])
def test_the_check_deadline_is_the_documented_bound(settings, probes, kind, dns):
    from connectivity.check import CheckSettings
    from connectivity.request import parse_request

    worst = CheckSettings().worst_case(parse_request(settings))
    assert worst == pytest.approx(documented_bound(probes, kind, dns)), worst
