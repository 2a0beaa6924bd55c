"""The answer of a connectivity check, serialised in the service's JSON shape."""
from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

from connectivity import errors as E
from plumbing.redact import redact_patterns

Context = tuple[tuple[str, str], ...]


def context(**items: Any) -> Context:
    """Issue context as ordered (key, value) pairs: strings without credentials, None dropped."""
    return tuple((k, redact_patterns(str(v))) for k, v in items.items() if v is not None)


@dataclass(frozen=True)
class Issue:
    type: str
    severity: str = "Error"
    origin: str = "Local"
    context: Context = ()

    def to_json(self) -> dict[str, Any]:
        return {"origin": self.origin, "severity": self.severity, "type": self.type,
                "context": [{k: v} for k, v in self.context]}

    def detail(self) -> str:
        return dict(self.context).get("detail", "")


@dataclass(frozen=True)
class RttStats:
    sent: int
    received: int
    rtts_ms: tuple[float, ...] = ()

    @property
    def loss_percent(self) -> float:
        return 100.0 * (self.sent - self.received) / self.sent if self.sent else 0.0

    def summary(self) -> tuple[Optional[float], Optional[float], Optional[float]]:
        if not self.rtts_ms:
            return None, None, None
        return min(self.rtts_ms), sum(self.rtts_ms) / len(self.rtts_ms), max(self.rtts_ms)


@dataclass(frozen=True)
class Hop:
    type: str
    address: str
    ttl: int
    stats: RttStats
    issues: tuple[Issue, ...] = ()
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    resource_id: str = ""   # the request's source/destination resourceId, echoed


def _ms(value: Optional[float]) -> Optional[int]:
    return None if value is None else round(value)


def hops_json(hops: Sequence[Hop]) -> list[dict[str, Any]]:
    """A linear path: each hop links to the next with that next hop's round-trip statistics."""
    out = []
    for i, hop in enumerate(hops):
        nxt = hops[i + 1] if i + 1 < len(hops) else None
        links = []
        if nxt is not None:
            low, avg, high = nxt.stats.summary()
            links.append({"nextHopId": nxt.id, "linkType": "Network",
                          "roundTripTimeMin": _ms(low), "roundTripTimeAvg": _ms(avg),
                          "roundTripTimeMax": _ms(high), "issues": [],
                          "context": [{"probesSent": str(nxt.stats.sent)},
                                      {"probesLost": str(nxt.stats.sent - nxt.stats.received)},
                                      {"lossPercent": f"{nxt.stats.loss_percent:.0f}"},
                                      {"ttl": str(nxt.ttl)}]})
        out.append({"type": hop.type, "id": hop.id, "address": hop.address,
                    "resourceId": hop.resource_id, "nextHopIds": [nxt.id] if nxt else [],
                    "previousHopIds": [hops[i - 1].id] if i else [], "links": links,
                    "issues": [issue.to_json() for issue in hop.issues]})
    return out


@dataclass(frozen=True)
class ConnectivityResult:
    """Outcome of run_check; status_code is 0 Reachable, 1 Degraded, or an error code."""

    connection_status: str
    probes_sent: int
    probes_failed: int
    latencies_ms: tuple[float, ...] = ()
    hops: tuple[Hop, ...] = ()
    issues: tuple[Issue, ...] = ()
    status_code: int = E.REACHABLE
    destination: str = ""
    probe_results: tuple[Any, ...] = field(default=(), compare=False, repr=False)

    @property
    def succeeded(self) -> bool:
        """The handler's rule: Reachable/Degraded report success; Unreachable reports error."""
        return self.connection_status in ("Reachable", "Degraded")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"hops": hops_json(self.hops),
                               "connectionStatus": self.connection_status}
        if self.latencies_ms and self.connection_status != "Unreachable":
            values = self.latencies_ms
            out.update(avgLatencyInMs=_ms(sum(values) / len(values)),
                       minLatencyInMs=_ms(min(values)), maxLatencyInMs=_ms(max(values)))
        out.update(probesSent=self.probes_sent, probesFailed=self.probes_failed,
                   issues=[issue.to_json() for issue in self.issues])
        return out

    @property
    def summary(self) -> str:
        """One line for people: status, then the first error with its evidence, or the stats."""
        head = f"{self.connection_status}: {self.destination}" if self.destination else \
            self.connection_status
        errors = [i for i in self.issues if i.severity == "Error"]
        if errors:
            issue = errors[0]
            detail = issue.detail()
            return f"{head}: {issue.type}" + (f" ({detail})" if detail else "")
        if self.latencies_ms:
            avg = sum(self.latencies_ms) / len(self.latencies_ms)
            return f"{head} ({self.probes_sent - self.probes_failed}/{self.probes_sent} probes, " \
                   f"avg {avg:.2f} ms)"
        return head
