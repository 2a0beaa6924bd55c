"""Run one connectivity check: resolve, route, probe, trace, diagnose; never raises on network."""
from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Optional

from connectivity import dns, route
from connectivity import errors as E
from connectivity.deadline import Deadline
from connectivity.diagnose import Observations, dns_issue, issues_for, status_valid
from connectivity.firewall import Flow, Ruleset, with_counter_delta
from connectivity.hops import Tracer, TraceSettings, windows
from connectivity.httpprobe import http_probe
from connectivity.model import ConnectivityResult, Hop, Issue, RttStats, context
from connectivity.pressure import PressureSampler
from connectivity.probe import IcmpEcho, ProbeResult, SourceBindError, errno_name, tcp_probe
from connectivity.request import ConnectivityRequest
from plumbing.clock import Clock, SystemClock
from plumbing.crashpoints import crashpoint


@dataclass(frozen=True)
class CheckSettings:
    """Per-phase limits; worst_case() is the bound README (connectivity, Time bounds) states."""

    probe_timeout: float = 1.0   # a TCP connect or ICMP echo; the connect of an HTTP probe
    http_timeout: float = 2.0    # an HTTP probe's TLS, request and response head, after connect
    interval: float = 0.05
    dns_budget: float = dns.DNS_BUDGET
    local_budget: float = 4.0    # firewall ruleset reads: half before the probes, half after
    trace: TraceSettings = field(default_factory=TraceSettings)
    discover_hops: bool = True

    def probe_deadline(self, request: ConnectivityRequest) -> float:
        """One probe, every phase included (connect, TLS, request, response)."""
        return self.probe_timeout + (self.http_timeout if request.http is not None else 0.0)

    def hops_budget(self) -> float:
        return windows(self.trace) * self.trace.timeout if self.discover_hops else 0.0

    def worst_case(self, request: ConnectivityRequest) -> float:
        """D + N x (P + interval) + H + L: no check of this request can take longer."""
        resolve = 0.0 if request.is_ip_literal else self.dns_budget
        return resolve + request.probes * (self.probe_deadline(request) + self.interval) + \
            self.hops_budget() + self.local_budget


def run_check(request: ConnectivityRequest, *, clock: Optional[Clock] = None,
              settings: Optional[CheckSettings] = None) -> ConnectivityResult:
    """Blocking; network failures and run-time input problems come back as result codes.

    One deadline for the whole check (settings.worst_case), and each phase a share of it.
    """
    clock = SystemClock() if clock is None else clock
    settings = settings or CheckSettings()
    check = Deadline.after(settings.worst_case(request), clock)
    sampler = PressureSampler()
    crashpoint("connectivity.check.dns")
    try:
        address = _target(request, check.within(settings.dns_budget))
    except E.DestinationUnresolvable as exc:
        return _not_started(request, exc, [dns_issue(exc.resolution)])
    except E.IPv6Unavailable as exc:
        return _not_started(request, exc, [Issue("NetworkError", "Error", "Local", context(
            preferredIPVersion="IPv6", detail=exc.message))])
    crashpoint("connectivity.check.route")
    obs = Observations(request, address, route.lookup(address))
    before = Ruleset.load(check.within(settings.local_budget / 2))
    _probe_all(obs, settings, clock, check)
    if obs.bind_error is None and obs.route.ok and settings.discover_hops:
        crashpoint("connectivity.check.hops")
        _trace(obs, settings, check.within(settings.hops_budget()))
    if obs.network_failures and obs.bind_error is None and obs.route.ok:
        crashpoint("connectivity.check.firewall")
        _firewall(obs, before, check.within(settings.local_budget / 2))
    return _result(obs, issues_for(obs) + sampler.issues())


def _target(request: ConnectivityRequest, deadline: Deadline) -> str:
    wants_v6 = request.ip_version == "IPv6" or ":" in request.host
    if wants_v6 and not route.has_global_ipv6():
        raise E.IPv6Unavailable(f"IPv6 requested for {request.host} but this VM has no global "
                                "IPv6 address")
    res = dns.resolve(request.host, request.ip_version, deadline=deadline)
    if not res.addresses:
        raise _unresolvable(res)
    address = res.addresses[0]
    if ":" in address and not wants_v6 and not route.has_global_ipv6():
        raise E.IPv6Unavailable(f"{request.host} has only IPv6 addresses ({address}) and this "
                                "VM has no global IPv6 address")
    return address


def _unresolvable(res: dns.Resolution) -> E.DestinationUnresolvable:
    return E.DestinationUnresolvable(f"cannot resolve {res.name}: {dns_issue(res).detail()}", res)


def _not_started(request: ConnectivityRequest, exc: E.ConnectivityError,
                 issues: list[Issue]) -> ConnectivityResult:
    return ConnectivityResult("Unreachable", 0, 0, issues=tuple(issues), status_code=exc.code,
                              destination=request.host)


def _probe_all(obs: Observations, settings: CheckSettings, clock: Clock,
               check: Deadline) -> None:
    req = obs.request
    try:
        echo = IcmpEcho(obs.address) if req.protocol == "Icmp" else None
    except OSError as exc:
        name = errno_name(exc.errno or 0)
        obs.local_error = f"cannot open an ICMP socket ({name}): needs root, or this group " \
                          "in net.ipv4.ping_group_range"
        obs.probes.extend(ProbeResult(False, name) for _ in range(req.probes))
        return
    try:
        for number in range(req.probes):
            if number:
                clock.sleep(settings.interval)
            if check.expired:
                obs.cut_short = True  # only if the machine stalled us: the shares add up
                break
            probe = check.within(settings.probe_deadline(req))
            obs.probes.append(_one_probe(obs, number, echo, settings, probe))
    finally:
        if echo is not None:
            echo.close()


def _one_probe(obs: Observations, number: int, echo: Optional[IcmpEcho],
               settings: CheckSettings, probe: Deadline) -> ProbeResult:
    req = obs.request
    try:
        if echo is not None:
            return echo.probe(number + 1, probe.left())
        if req.http is None:
            return tcp_probe(obs.address, req.port, req.source_port, probe.left())
        outcome = http_probe(obs.address, req.host, req.port, req.protocol == "Https", req.http,
                             req.source_port, probe, settings.probe_timeout)
        obs.http.append(outcome)
        good = outcome.status is not None and not outcome.error and status_valid(
            outcome.status, req.http.valid_status_codes)
        if outcome.connect.ok and not good:
            return ProbeResult(False, f"HTTP {outcome.status or outcome.error_kind}",
                               outcome.connect.rtt_ms)
        return outcome.connect
    except SourceBindError as exc:
        obs.bind_error = exc
        return ProbeResult(False, errno_name(exc.errno or 0))
    except OSError as exc:
        return ProbeResult(False, errno_name(exc.errno or 0))


def _trace(obs: Observations, settings: CheckSettings, deadline: Deadline) -> None:
    if ":" in obs.address:
        obs.trace_error = "hop discovery is implemented for IPv4 only"
        return
    icmp = obs.request.protocol == "Icmp"
    holder = None
    try:
        sport = obs.request.source_port or 0
        if not icmp and not sport:
            # Hold an ephemeral port so no other socket uses it while the SYNs are out.
            holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            holder.bind((obs.route.source, 0))
            sport = holder.getsockname()[1]
        tracer = Tracer(obs.route.source, obs.address, obs.request.port, sport, icmp,
                        settings.trace)
        obs.trace = tracer.run(deadline)
    except OSError as exc:
        obs.trace_error = f"hop discovery needs raw sockets: {errno_name(exc.errno or 0)}"
    finally:
        if holder is not None:
            holder.close()


def _firewall(obs: Observations, before: Ruleset, deadline: Deadline) -> None:
    after = Ruleset.load(deadline)
    obs.ruleset_read = after.available
    proto = "icmp" if obs.request.protocol == "Icmp" else "tcp"
    flow = Flow(6 if ":" in obs.address else 4, proto, obs.route.source, obs.address,
                obs.request.source_port, obs.request.port, oifname=obs.route.interface)
    for direction, current in (("outbound", flow), ("inbound", flow.reply())):
        finding = after.find(current)
        if finding is not None:
            setattr(obs, direction, with_counter_delta(finding, before.counters(),
                                                       after.counters()))
            return


def _result(obs: Observations, issues: list[Issue]) -> ConnectivityResult:
    failed = sum(1 for p in obs.probes if not p.ok)
    sent = len(obs.probes)
    # No probe sent (the machine stalled the check past its deadline first) verified
    # nothing: Unreachable, never a Reachable of zero probes; the Unknown warning says why.
    status = "Unreachable" if failed == sent else "Reachable" if failed == 0 else "Degraded"
    code = {"Reachable": E.REACHABLE, "Degraded": E.DEGRADED}.get(status, E.UNREACHABLE)
    latencies = tuple(p.rtt_ms for p in obs.probes if p.ok and p.rtt_ms is not None)
    if obs.trace_error:
        issues.append(Issue("TraceRouteUnavailable", "Warning", "Local",
                            context(detail=obs.trace_error)))
    if obs.cut_short:
        issues.append(Issue("Unknown", "Warning", "Local", context(
            probesPlanned=obs.request.probes, detail=f"the check's deadline was reached after "
            f"{sent} of {obs.request.probes} probes (the machine is too busy?)")))
    return ConnectivityResult(status, sent, failed, latencies, tuple(build_hops(obs, issues)),
                              tuple(issues), code, obs.request.host, tuple(obs.probes))


def build_hops(obs: Observations, issues: list[Issue]) -> list[Hop]:
    """Source, each TTL up to the destination (or the last that answered), then Destination."""
    local = tuple(i for i in issues if i.origin in ("Local", "Outbound")
                  and i.type in ("GuestFirewall", "RouteMissing", "UserDefinedRoute",
                                 "SocketBind", "CPU", "Memory"))
    req = obs.request
    hops = [Hop("Source", obs.route.source or "", 0, RttStats(0, 0), local,
                resource_id=req.source_resource_id)]
    trace = obs.trace
    if trace is None:
        return hops
    last = trace.reached_ttl or max([t for t, r in trace.records.items() if r.replies],
                                    default=0)
    for ttl in range(1, last + 1):
        record = trace.records.get(ttl)
        if record is None:
            break
        reached = ttl == trace.reached_ttl
        stats = RttStats(record.sent, len(record.replies), tuple(r[1] for r in record.replies))
        remote = tuple(i for i in issues if reached and i.origin == "Outbound"
                       and i not in local)
        hops.append(Hop("Destination" if reached else "VirtualAppliance",
                        obs.address if reached else record.address() or "*", ttl, stats, remote,
                        resource_id=req.destination_resource_id if reached else ""))
    return hops
