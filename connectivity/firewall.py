"""Find the guest nftables rule (iptables-nft included) that drops or rejects a flow, quoted."""
from __future__ import annotations

import ipaddress
import json
import re
import socket
from dataclasses import dataclass, replace
from typing import Any, Optional, Union

from connectivity.address import IPAddress
from connectivity.deadline import Deadline
from plumbing import proc

TERMINAL = ("drop", "reject")
Key = tuple[str, str, str, int]          # family, table, chain, handle
IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


@dataclass(frozen=True)
class Flow:
    version: int                 # 4 or 6
    proto: str                   # "tcp" or "icmp"
    saddr: str
    daddr: str
    sport: Optional[int]         # None: an ephemeral port the kernel picks per probe
    dport: Optional[int]         # None: the reply to an ephemeral source port
    oifname: str = ""
    iifname: str = ""
    ct_state: str = "new"
    hook: str = "output"

    def reply(self) -> Flow:
        return Flow(self.version, self.proto, self.daddr, self.saddr, self.dport, self.sport,
                    "", self.oifname, "established", "input")


@dataclass(frozen=True)
class Finding:
    key: Key
    verdict: str                 # "drop", "reject with tcp reset", "policy drop"...
    rule_text: str
    certain: bool                # every match expression was understood and matched
    hook: str
    counter_delta: Optional[int] = None
    iptables_text: str = ""      # the same rule as iptables-save prints it (iptables-nft tables)

    @property
    def location(self) -> str:
        family, table, chain, handle = self.key
        where = f"table {family} {table} chain {chain}"
        return where + (f" handle {handle}" if handle >= 0 else "")


class Ruleset:
    """One snapshot of `nft -j list ruleset` plus the human text of each rule."""

    def __init__(self, items: list[dict[str, Any]], text: dict[Key, str],
                 deadline: Optional[Deadline] = None) -> None:
        self.chains = {(c["family"], c["table"], c["name"]): c
                       for c in (i["chain"] for i in items if "chain" in i)}
        self.rules: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        for rule in (i["rule"] for i in items if "rule" in i):
            self.rules.setdefault((rule["family"], rule["table"], rule["chain"]), []).append(rule)
        self.text = text
        self.available = bool(items)
        self.iptables_tables: set[str] = set()  # "family table" that iptables-nft made
        self.deadline = deadline or Deadline.after(10.0)   # for the iptables-save reads

    @classmethod
    def load(cls, deadline: Optional[Deadline] = None) -> Ruleset:
        """The ruleset now; empty if nft is missing, fails, or `deadline` (10 s) passes."""
        deadline = deadline or Deadline.after(10.0)
        try:
            raw = proc.run(["nft", "-j", "list", "ruleset"], timeout=deadline.wait(),
                           check=False)
            text = proc.run(["nft", "-a", "list", "ruleset"], timeout=deadline.wait(),
                            check=False)
        except (proc.CommandError, socket.timeout):
            return cls([], {})
        if raw.returncode != 0:
            return cls([], {})
        try:
            items = json.loads(raw.stdout or "{}").get("nftables", [])
        except ValueError:
            return cls([], {})
        ruleset = cls(items, _rule_texts(text.stdout), deadline)
        ruleset.iptables_tables = set(re.findall(
            r"# Warning: table (\S+ \S+) is managed by iptables-nft", text.stdout + text.stderr))
        return ruleset

    def counters(self) -> dict[Key, int]:
        out = {}
        for (family, table, chain), rules in self.rules.items():
            for rule in rules:
                for expr in rule["expr"]:
                    if "counter" in expr and isinstance(expr["counter"], dict):
                        out[(family, table, chain, rule["handle"])] = expr["counter"]["packets"]
        return out

    def find(self, flow: Flow) -> Optional[Finding]:
        """Walk the base chains of the flow's hook in priority order, as netfilter would."""
        families = ("ip", "inet") if flow.version == 4 else ("ip6", "inet")
        bases = sorted((c for c in self.chains.values()
                        if c.get("hook") == flow.hook and c["family"] in families),
                       key=lambda c: c.get("prio", 0))
        for base in bases:
            where = (base["family"], base["table"], base["name"])
            found = self._walk(where, flow, 0)
            if isinstance(found, Finding):
                return found
            if found is None and base.get("policy") == "drop":
                text = f"chain {base['name']} {{ type {base.get('type')} hook {flow.hook} " \
                       f"priority {base.get('prio')}; policy drop; }}"
                return Finding(where + (-1,), "policy drop", text, True, flow.hook)
        return None

    def _walk(self, where: tuple[str, str, str], flow: Flow, depth: int) -> Any:
        """A Finding, "accept" (this base chain ends), or None (fell through)."""
        if depth > 16:
            return None
        for rule in self.rules.get(where, []):
            matched = rule_matches(rule["expr"], flow)
            if matched is False:
                continue
            verdict, target = _verdict(rule["expr"])
            key = where + (rule["handle"],)
            if verdict in TERMINAL:
                text = self.text.get(key, verdict)
                return Finding(key, _verdict_text(rule["expr"]), text, matched is True, flow.hook,
                               iptables_text=self._iptables_line(where, rule))
            if matched is None:
                continue  # never let a rule we cannot evaluate hide a later drop
            if verdict == "accept":
                return "accept"
            if verdict in ("jump", "goto"):
                found = self._walk(where[:2] + (target,), flow, depth + 1)
                if found is not None or verdict == "goto":
                    return found
            if verdict == "return":
                return None
        return None

    def _iptables_line(self, where: tuple[str, str, str], rule: dict[str, Any]) -> str:
        """iptables-save lists a chain's rules in the order nft does: pick the same position."""
        family, table, chain = where
        if f"{family} {table}" not in self.iptables_tables or family not in ("ip", "ip6"):
            return ""
        tool = "iptables-save" if family == "ip" else "ip6tables-save"
        try:
            saved = proc.run([tool, "-t", table], timeout=self.deadline.wait(),
                             check=False).stdout
        except (proc.CommandError, socket.timeout):
            return ""
        lines = [ln for ln in saved.splitlines() if ln.startswith(f"-A {chain} ")]
        position = self.rules[where].index(rule)
        return lines[position] if position < len(lines) else ""


def with_counter_delta(finding: Finding, before: dict[Key, int],
                       after: dict[Key, int]) -> Finding:
    if finding.key not in after:
        return finding
    delta = after[finding.key] - before.get(finding.key, 0)
    return replace(finding, counter_delta=delta)


def _verdict(exprs: list[dict[str, Any]]) -> tuple[str, str]:
    for expr in exprs:
        xt = expr.get("xt")
        if isinstance(xt, dict) and xt.get("type") == "target":
            name = str(xt.get("name", "")).lower()
            return (name, "") if name in TERMINAL else ("", "")
        for name in ("drop", "reject", "accept", "return"):
            if name in expr:
                return name, ""
        for name in ("jump", "goto"):
            if name in expr:
                return name, expr[name]["target"]
    return "", ""


def _verdict_text(exprs: list[dict[str, Any]]) -> str:
    for expr in exprs:
        xt = expr.get("xt")
        if isinstance(xt, dict) and xt.get("type") == "target":
            return str(xt.get("name", "")).lower()
        if "reject" in expr:
            spec = expr["reject"] or {}
            kind = spec.get("type", "")
            return "reject" + (f" with {kind}" if kind else "") + (
                f" {spec['expr']}" if spec.get("expr") else "")
    return "drop"


def rule_matches(exprs: list[dict[str, Any]], flow: Flow) -> Optional[bool]:
    """True if every match holds, False if one fails, None if some could not be evaluated."""
    certain = True
    for expr in exprs:
        xt = expr.get("xt")
        if isinstance(xt, dict) and xt.get("type") == "match" and xt.get("name") != "comment":
            certain = False  # an iptables extension match nft cannot show us
        if "match" not in expr:
            continue
        value = _field(expr["match"]["left"], flow)
        if value is _UNKNOWN:
            certain = False
            continue
        if value is _ABSENT:
            return False  # e.g. "tcp dport" on an ICMP flow, "ip daddr" on an IPv6 flow
        result = _compare(expr["match"]["op"], value, expr["match"]["right"])
        if result is None:
            certain = False
        elif not result:
            return False
    return True if certain else None


_UNKNOWN, _ABSENT = object(), object()


def _field(left: Any, flow: Flow) -> Any:
    if not isinstance(left, dict):
        return _UNKNOWN
    if "payload" in left:
        proto, name = left["payload"].get("protocol"), left["payload"].get("field")
        if proto in ("ip", "ip6"):
            if (proto == "ip") != (flow.version == 4):
                return _ABSENT
            return {"saddr": flow.saddr, "daddr": flow.daddr, "protocol": flow.proto,
                    "nexthdr": flow.proto}.get(name, _UNKNOWN)
        if proto in ("tcp", "udp", "th"):
            if flow.proto != "tcp" or proto == "udp":
                return _ABSENT
            value = {"sport": flow.sport, "dport": flow.dport}.get(name, _UNKNOWN)
            return _UNKNOWN if value is None else value
        return _ABSENT if proto in ("icmp", "icmpv6") and flow.proto == "tcp" else _UNKNOWN
    if "meta" in left:
        key = left["meta"].get("key")
        return {"l4proto": flow.proto, "oifname": flow.oifname, "iifname": flow.iifname,
                "nfproto": "ipv4" if flow.version == 4 else "ipv6",
                "protocol": "ip" if flow.version == 4 else "ip6"}.get(key, _UNKNOWN)
    if "ct" in left and left["ct"].get("key") == "state":
        return flow.ct_state
    return _UNKNOWN


def _compare(op: str, value: Any, right: Any) -> Optional[bool]:
    if op in ("==", "in"):
        return _member(value, right)
    if op == "!=":
        hit = _member(value, right)
        return None if hit is None else not hit
    if op in ("<", ">", "<=", ">=") and isinstance(value, int) and isinstance(right, int):
        return {"<": value < right, ">": value > right, "<=": value <= right,
                ">=": value >= right}[op]
    return None


def _member(value: Any, right: Any) -> Optional[bool]:
    if isinstance(right, list):
        right = {"set": right}
    if isinstance(right, dict):
        if "set" in right:
            hits = [_member(value, item) for item in right["set"]]
            return True if True in hits else (None if None in hits else False)
        if "prefix" in right:
            net = ipaddress.ip_network(f"{right['prefix']['addr']}/{right['prefix']['len']}",
                                       strict=False)
            return _in_net(value, net)
        if "range" in right:
            low, high = right["range"]
            return _in_range(value, low, high)
        return None
    if isinstance(right, str) and right.startswith("@"):
        return None  # a named set: not expanded
    if isinstance(right, str) and isinstance(value, str) and right.endswith("*"):
        return value.startswith(right[:-1])
    if isinstance(value, str) and isinstance(right, str) and _is_ip(value):
        return _is_ip(right) and ipaddress.ip_address(value) == ipaddress.ip_address(right)
    return bool(value == right)  # both are JSON scalars here: == is a bool


def _in_net(value: Any, net: IPNetwork) -> Optional[bool]:
    try:
        return ipaddress.ip_address(value) in net
    except (ValueError, TypeError):
        return None


def _in_range(value: Any, low: Any, high: Any) -> Optional[bool]:
    if isinstance(value, int) and isinstance(low, int):
        return bool(low <= value <= high)
    try:
        first, at = ipaddress.ip_address(low), ipaddress.ip_address(value)
        return _not_after(first, at) and _not_after(at, ipaddress.ip_address(high))
    except (ValueError, TypeError):
        return None


def _not_after(first: IPAddress, second: IPAddress) -> bool:
    """first <= second, in the addresses' own order: IPv4 against IPv6 is a TypeError."""
    if first.version != second.version:
        raise TypeError(f"{first} and {second} are not of the same IP version")
    return int(first) <= int(second)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def _rule_texts(listing: str) -> dict[Key, str]:
    """Map each rule to its line in `nft -a list ruleset`, without the handle comment."""
    out: dict[Key, str] = {}
    table = chain = None
    for line in listing.splitlines():
        words = line.split()
        if words[:1] == ["table"] and len(words) >= 3:
            table, chain = (words[1], words[2]), None
        elif words[:1] == ["chain"] and len(words) >= 2:
            chain = words[1]
        elif table and chain and "# handle" in line:
            match = re.search(r"\s*# handle (\d+)\s*$", line)
            if match:
                out[(table[0], table[1], chain, int(match.group(1)))] = line[:match.start()].strip()
    return out
