"""Turn what the check observed into issues, each with its local evidence in `context`."""
from __future__ import annotations

import errno
from dataclasses import dataclass, field
from typing import Optional

import psutil

from connectivity import dns
from connectivity.firewall import Finding
from connectivity.hops import Trace
from connectivity.httpprobe import HttpOutcome
from connectivity.model import Issue, context
from connectivity.probe import ProbeResult
from connectivity.request import ConnectivityRequest
from connectivity.route import RouteLookup
from plumbing.redact import strip_query

REFUSED = errno.errorcode[errno.ECONNREFUSED]


@dataclass
class Observations:
    request: ConnectivityRequest
    address: str
    route: RouteLookup
    probes: list[ProbeResult] = field(default_factory=list)
    http: list[HttpOutcome] = field(default_factory=list)
    bind_error: Optional[OSError] = None
    trace: Optional[Trace] = None
    trace_error: str = ""
    local_error: str = ""        # the probe socket itself could not be opened
    outbound: Optional[Finding] = None
    inbound: Optional[Finding] = None
    ruleset_read: bool = False
    cut_short: bool = False      # the check's deadline stopped the probes early

    @property
    def outcomes(self) -> list[str]:
        return [p.outcome for p in self.probes if not p.ok]

    @property
    def network_failures(self) -> list[str]:
        """Failures before any HTTP exchange: the only ones a firewall rule can explain."""
        return [o for o in self.outcomes if not o.startswith("HTTP")]


def dns_issue(res: dns.Resolution) -> Issue:
    bad = next((a for a in res.attempts if a.outcome == "Malformed"), None)
    detail = {"NXDOMAIN": f"{res.name}: NXDOMAIN from {res.server}",
              "MalformedReply": f"{res.name}: {bad.server} sent a malformed reply ({bad.error})"
              if bad else "",
              "Timeout": f"{res.name}: no answer from any server (timeout)",
              "NoAddress": f"{res.name}: {res.server} answered without an address",
              "NoNameservers": "no nameserver in /etc/resolv.conf"}.get(
                  res.failure, f"{res.name}: {res.failure} from {res.server}")
    pairs = tuple(dns.describe(res)) + (("detail", detail),)
    return Issue("DnsResolution", "Error", "Local", pairs)


def issues_for(obs: Observations) -> list[Issue]:
    """Local causes first (bind, route, firewall), then what the destination answered."""
    if obs.bind_error is not None:
        return [bind_issue(obs)]
    if obs.local_error:
        return [Issue("NetworkError", "Error", "Local", context(detail=obs.local_error))]
    if not obs.route.ok:
        return [Issue(obs.route.issue_type, "Error", "Local", tuple(obs.route.evidence()))]
    found = [firewall_issue(f, obs) for f in (obs.outbound, obs.inbound) if f is not None]
    if found:
        return found
    found = destination_issues(obs)
    failed = len(obs.outcomes)
    if failed and not found:
        found.append(unexplained(obs))
    if 0 < failed < len(obs.probes):
        found.append(Issue("DestinationPartiallyReachable", "Warning", "Outbound", context(
            probesFailed=failed, outcomes=", ".join(sorted(set(obs.outcomes))),
            detail=f"{failed} of {len(obs.probes)} probes failed")))
    return found


def bind_issue(obs: Observations) -> Issue:
    err = obs.bind_error
    code = errno.errorcode.get(err.errno or 0, str(err.errno)) if err else ""
    port = obs.request.source_port
    holder = _port_holder(port) if err and err.errno == errno.EADDRINUSE else ""
    reason = "SourcePortInUse" if code == "EADDRINUSE" else "BindFailed"
    return Issue("SocketBind", "Error", "Local", context(
        reason=reason, sourcePort=port, errno=code, heldBy=holder or None,
        detail=f"cannot bind source port {port}: {code}" + (f" (held by {holder})"
                                                            if holder else "")))


def _port_holder(port: Optional[int]) -> str:
    try:
        for conn in psutil.net_connections(kind="inet"):
            if conn.laddr and conn.laddr.port == port:
                name = psutil.Process(conn.pid).name() if conn.pid else "?"
                return f"{name} pid {conn.pid} ({conn.status})"
    except (psutil.Error, OSError):
        return ""
    return ""


def firewall_issue(finding: Finding, obs: Observations) -> Issue:
    inbound = finding.hook == "input"
    verb = "drops" if "drop" in finding.verdict else "rejects"
    what = "the replies" if inbound else f"tcp to {obs.address}:{obs.request.port}" \
        if obs.request.protocol != "Icmp" else f"icmp to {obs.address}"
    certainty = "certain" if finding.certain else "possible (some matches not evaluated)"
    return Issue("GuestFirewall", "Error", "Inbound" if inbound else "Outbound", context(
        rule=finding.rule_text, iptablesRule=finding.iptables_text or None,
        location=finding.location, verdict=finding.verdict,
        hook=finding.hook, match=certainty,
        counterDelta=finding.counter_delta, probeOutcomes=", ".join(sorted(set(obs.outcomes))),
        detail=f"nft rule '{finding.rule_text}' ({finding.location}) {verb} {what}"))


def destination_issues(obs: Observations) -> list[Issue]:
    found: list[Issue] = []
    trace = obs.trace
    if REFUSED in obs.outcomes:
        rst = trace is not None and trace.destination_answer == "RST"
        found.append(Issue("NoListenerOnDestination", "Error", "Outbound", context(
            port=obs.request.port, evidence="TCP RST from the destination seen on the wire"
            if rst else "connection refused; no local reject rule matches",
            detail=f"nothing listens on {obs.address}:{obs.request.port} (connection refused)")))
    found.extend(http_issues(obs))
    return found


def http_issues(obs: Observations) -> list[Issue]:
    config = obs.request.http
    if config is None:
        return []
    found: list[Issue] = []
    statuses = sorted({h.status for h in obs.http if h.status is not None})
    bad = [s for s in statuses if not status_valid(s, config.valid_status_codes)]
    if bad:
        valid = list(config.valid_status_codes) or "2xx, 3xx"
        found.append(Issue("StatusCodeValidationFailed", "Error", "Outbound", context(
            statusCodes=", ".join(map(str, bad)), validStatusCodes=valid,
            request=f"{config.method.upper()} {strip_query(config.path)}",
            detail=f"HTTP {', '.join(map(str, bad))} not in validStatusCodes {valid}")))
    errors = [h for h in obs.http if h.error]
    if errors:
        kind = "HeaderValidationFailed" if errors[0].error_kind == "headers" else "NetworkError"
        found.append(Issue(kind, "Error", "Outbound", context(
            failures=len(errors), detail=errors[0].error)))
    return found


def status_valid(status: int, valid: tuple[int, ...]) -> bool:
    return status in valid if valid else 200 <= status < 400


def unexplained(obs: Observations) -> Issue:
    """No local cause found: say where the path went silent, from the hop discovery."""
    trace = obs.trace
    outcomes = ", ".join(sorted(set(obs.outcomes)))
    last = ""
    if trace is not None:
        answered = [t for t, r in sorted(trace.records.items()) if r.replies]
        last = trace.records[answered[-1]].address() if answered else ""
        if trace.stop_reason:
            return Issue("NetworkError", "Error", "Outbound", context(
                outcomes=outcomes, detail=trace.stop_reason))
        if trace.send_errors:
            return Issue("GuestFirewall", "Error", "Outbound", context(
                sendErrors=dict(trace.send_errors), match="no rule identified",
                detail="the kernel refused to send probes (EPERM): a local netfilter rule "
                       "drops them"))
    fw = "" if obs.ruleset_read else "; guest firewall ruleset not readable"
    return Issue("NetworkError", "Error", "Outbound", context(
        outcomes=outcomes, lastRespondingHop=last or None,
        detail=f"probes failed ({outcomes}); no local cause found{fw}"
        + (f"; path silent after {last}" if last else "")))
