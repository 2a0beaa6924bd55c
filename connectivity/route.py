"""Local route lookup over netlink (pyroute2): interface, source, gateway, table, or why none."""
from __future__ import annotations

import errno
import socket
from dataclasses import dataclass
from typing import Optional

from pyroute2 import IPRoute, NetlinkError

TABLE_NAMES = {253: "default", 254: "main", 255: "local"}
# Route types that make a lookup fail, by the errno netlink answers with.
FAILURES = {errno.ENETUNREACH: ("RouteMissing", "no route to the destination"),
            errno.EHOSTUNREACH: ("UserDefinedRoute", "an 'unreachable' route matches"),
            errno.EACCES: ("UserDefinedRoute", "a 'prohibit' route matches"),
            errno.EINVAL: ("UserDefinedRoute", "a 'blackhole' route matches")}


@dataclass(frozen=True)
class RouteLookup:
    destination: str
    ok: bool
    interface: str = ""
    source: str = ""
    gateway: str = ""
    table: str = ""
    issue_type: str = ""
    reason: str = ""
    rules: tuple[str, ...] = ()

    def evidence(self) -> list[tuple[str, str]]:
        pairs = [("destination", self.destination), ("tablesConsulted", ", ".join(self.rules)),
                 ("detail", f"{self.reason} (netlink RTM_GETROUTE)")]
        return pairs if not self.ok else [("interface", self.interface),
                                          ("source", self.source), ("gateway", self.gateway),
                                          ("table", self.table)]


def table_name(number: Optional[int]) -> str:
    return TABLE_NAMES.get(number or 0, str(number))


def lookup(destination: str, source_port: Optional[int] = None) -> RouteLookup:
    """Ask the kernel which route a packet to `destination` would take right now."""
    family = socket.AF_INET6 if ":" in destination else socket.AF_INET
    with IPRoute() as ipr:
        rules = _rules(ipr, family)
        try:
            reply = ipr.route("get", dst=destination, family=family)[0]
        except NetlinkError as exc:
            kind, reason = FAILURES.get(exc.code, ("RouteMissing", f"netlink error {exc.code}"))
            return RouteLookup(destination, False, issue_type=kind, reason=reason, rules=rules)
        oif = reply.get_attr("RTA_OIF")
        links = ipr.get_links(oif) if oif else []
        name = links[0].get_attr("IFLA_IFNAME") if links else ""
        return RouteLookup(destination, True, interface=name or "",
                           source=reply.get_attr("RTA_PREFSRC") or "",
                           gateway=reply.get_attr("RTA_GATEWAY") or "",
                           table=table_name(reply.get_attr("RTA_TABLE")), rules=rules)


def _rules(ipr: IPRoute, family: int) -> tuple[str, ...]:
    """The policy rules in priority order, as "prio: table" (what a lookup walks through)."""
    out = []
    for rule in ipr.get_rules(family=family):
        prio = rule.get_attr("FRA_PRIORITY") or 0
        table = rule.get_attr("FRA_TABLE") or rule.get("table")
        out.append(f"{prio}: lookup {table_name(table)}")
    return tuple(out)


def has_global_ipv6() -> bool:
    """Whether any interface holds a non-link-local, non-loopback IPv6 address."""
    with IPRoute() as ipr:
        for addr in ipr.get_addr(family=socket.AF_INET6):
            if addr.get("scope") == 0 and addr.get_attr("IFA_ADDRESS") != "::1":
                return True
    return False
