"""Network namespaces and veth pairs for tests and benchmarks (iproute2), always cleaned up."""
from __future__ import annotations

import os
import subprocess
import uuid
from contextlib import ExitStack
from typing import List, Optional, Sequence

from plumbing import proc
from plumbing.netns import in_netns


def _ip(*args: str, ns: Optional[str] = None) -> str:
    argv = (["ip", "netns", "exec", ns] if ns else []) + ["ip", *args]
    return proc.run(argv, timeout=15).stdout


def unique_name(prefix: str) -> str:
    """A short name unique to this process; interface names are limited to 15 bytes."""
    return f"{prefix}{os.getpid() % 10000}{uuid.uuid4().hex[:4]}"[:15]


class Namespace:
    """One network namespace with loopback up; deleted (with its interfaces) on close."""

    def __init__(self, name: str) -> None:
        self.name = name
        proc.run(["ip", "netns", "add", name], timeout=15)
        _ip("link", "set", "lo", "up", ns=name)
        self._quiet()

    def _quiet(self) -> None:
        """No traffic of the kernel's own (router solicitations, DAD probes): tests compare
        captures packet for packet, and a stray ICMPv6 packet would be noise."""
        settings = [f"net.ipv6.conf.{scope}.{key}={value}"
                    for scope in ("all", "default")
                    for key, value in (("router_solicitations", 0), ("accept_ra", 0),
                                       ("dad_transmits", 0))]
        proc.run(["ip", "netns", "exec", self.name, "sysctl", "-q", "-w", *settings],
                 timeout=15, check=False)

    def ip(self, *args: str) -> str:
        return _ip(*args, ns=self.name)

    def run(self, argv: Sequence[str], timeout: float = 30, check: bool = True,
            **kwargs) -> proc.Completed:
        return proc.run(["ip", "netns", "exec", self.name, *argv], timeout=timeout,
                        check=check, **kwargs)

    def popen(self, argv: Sequence[str], **kwargs) -> subprocess.Popen:
        kwargs.setdefault("start_new_session", True)
        return subprocess.Popen(["ip", "netns", "exec", self.name, *argv], **kwargs)

    def enter(self):
        """A context manager that runs the calling thread inside this namespace."""
        return in_netns(self.name)

    def close(self) -> None:
        subprocess.run(["ip", "netns", "del", self.name], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=15)

    def __enter__(self) -> "Namespace":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def veth(a: Namespace, a_if: str, a_addrs: Sequence[str], b: Namespace, b_if: str,
         b_addrs: Sequence[str]) -> None:
    """Join two namespaces with a veth pair and assign the given CIDR addresses."""
    tmp = unique_name("vt")
    _ip("link", "add", tmp, "type", "veth", "peer", "name", tmp + "p")
    _ip("link", "set", tmp, "netns", a.name, "name", a_if)
    _ip("link", "set", tmp + "p", "netns", b.name, "name", b_if)
    for ns, ifname, addrs in ((a, a_if, a_addrs), (b, b_if, b_addrs)):
        for addr in addrs:
            ns.ip("addr", "add", addr, "dev", ifname, *(["nodad"] if ":" in addr else []))
        ns.ip("link", "set", ifname, "up")


class Topology(ExitStack):
    """Namespaces created for one test, all deleted when the test ends."""

    def __init__(self, prefix: str = "t") -> None:
        super().__init__()
        self.prefix = prefix
        self.namespaces: List[Namespace] = []

    def namespace(self, role: str) -> Namespace:
        ns = self.enter_context(Namespace(unique_name(f"{self.prefix}{role[:3]}")))
        self.namespaces.append(ns)
        return ns
