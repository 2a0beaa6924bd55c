"""Client - router - server namespaces in 10.199.0.0/16 with real servers (tests, bench)."""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from devtools import hostile_servers as hostile
from devtools.netns import Namespace, Topology, veth
from plumbing import proc

ROOT = Path(__file__).resolve().parents[1]
PYTHON = str(ROOT / ".venv" / "bin" / "python")
SERVERS = str(Path(__file__).with_name("pathlab_servers.py"))
HOSTILE = str(Path(__file__).with_name("hostile_servers.py"))
CLIENT, ROUTER_IN, ROUTER_OUT, SERVER = "10.199.1.2", "10.199.1.1", "10.199.2.1", "10.199.2.2"
SILENT_DNS = "10.199.2.53"
CLIENT6, ROUTER6_IN, ROUTER6_OUT, SERVER6 = ("fd00:199:1::2", "fd00:199:1::1", "fd00:199:2::1",
                                             "fd00:199:2::2")
HTTP_PORT, CLOSED_PORT, HTTPS_PORT = 80, 81, 443


@dataclass
class Path3:
    client: Namespace
    router: Namespace
    server: Namespace
    etc: Path                          # /etc/netns/<client>, bind-mounted into the client

    def check(self, *args: str, timeout: float = 90) -> tuple[int, dict]:
        """Run the CLI inside the client namespace; return its exit code and answer JSON."""
        done = self.client.run([PYTHON, "-m", "connectivity", *args, "--json"], timeout=timeout,
                               check=False, cwd=str(ROOT))
        assert done.stdout.strip(), f"no JSON from the CLI: {done.stderr[-2000:]}"
        return done.returncode, json.loads(done.stdout)

    def cli(self, *args: str, timeout: float = 90) -> proc.Completed:
        return self.client.run([PYTHON, "-m", "connectivity", *args], timeout=timeout,
                               check=False, cwd=str(ROOT))

    def nft(self, family: str, hook: str, rule: str) -> None:
        """One rule in a base chain `cc_<hook>` of table `<family> ccfw` in the client."""
        ruleset = (f"table {family} ccfw {{\n chain cc_{hook} {{\n"
                   f"  type filter hook {hook} priority 0;\n  {rule}\n }}\n}}\n")
        self.client.run(["nft", "-f", "-"], timeout=10, input_bytes=ruleset.encode())

    @contextmanager
    def ipv6(self) -> Iterator[None]:
        """IPv6 on the whole path for one test; the client has none again afterwards."""
        plan = ((self.client, "c0", CLIENT6), (self.router, "r0", ROUTER6_IN),
                (self.router, "r1", ROUTER6_OUT), (self.server, "s0", SERVER6))
        for ns, dev, addr in plan:
            ns.ip("-6", "addr", "add", f"{addr}/64", "dev", dev, "nodad")
        self.router.run(["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"], timeout=10)
        self.client.ip("-6", "route", "add", "default", "via", ROUTER6_IN)
        self.server.ip("-6", "route", "add", "default", "via", ROUTER6_OUT)
        try:
            yield
        finally:
            for ns, dev, addr in plan:
                ns.ip("-6", "addr", "del", f"{addr}/64", "dev", dev)

    def resolv(self, *servers: str, timeout: int = 1) -> None:
        text = "".join(f"nameserver {s}\n" for s in servers) + f"options timeout:{timeout}\n"
        (self.etc / "resolv.conf").write_text(text)


@contextmanager
def three_namespaces(prefix: str = "cc") -> Iterator[Path3]:
    """client (10.199.1.2) -> router (forwarding) -> server (10.199.2.2) with HTTP and DNS."""
    with Topology(prefix) as topo:
        client, router, server = (topo.namespace(r) for r in ("cli", "rtr", "srv"))
        veth(client, "c0", [f"{CLIENT}/24"], router, "r0", [f"{ROUTER_IN}/24"])
        veth(router, "r1", [f"{ROUTER_OUT}/24"], server, "s0", [f"{SERVER}/24",
                                                                  f"{SILENT_DNS}/24"])
        client.ip("route", "add", "default", "via", ROUTER_IN)
        server.ip("route", "add", "default", "via", ROUTER_OUT)
        router.run(["sysctl", "-qw", "net.ipv4.ip_forward=1"], timeout=10)
        # ICMP time-exceeded is rate limited per peer; hop tests and the bench send bursts.
        router.run(["sysctl", "-qw", "net.ipv4.icmp_ratelimit=0"], timeout=10)
        etc = Path("/etc/netns") / client.name
        etc.mkdir(parents=True, exist_ok=True)
        topo.callback(shutil.rmtree, str(etc), True)
        _start(topo, server, [PYTHON, SERVERS, "http", SERVER, str(HTTP_PORT)])
        # Not under /etc/netns/<client>: `ip netns exec` bind-mounts every file found there.
        certs = tempfile.mkdtemp(prefix="ccpki")
        topo.callback(shutil.rmtree, certs, True)
        cert = str(Path(certs) / "server.pem")
        proc.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                  "-subj", "/CN=web.cc.test", "-keyout", cert, "-out", cert], timeout=60)
        _start(topo, server, [PYTHON, SERVERS, "http", SERVER, str(HTTPS_PORT), cert])
        _start(topo, server, [PYTHON, SERVERS, "dns", SILENT_DNS])
        _start(topo, server, ["dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts",
                              f"--listen-address={SERVER}", "--bind-interfaces",
                              "--local=/cc.test/", f"--host-record=web.cc.test,{SERVER},{SERVER6}",
                              "--pid-file=", "--user=root"])
        wait_tcp(server, SERVER, HTTP_PORT)
        wait_tcp(server, SERVER, HTTPS_PORT)
        path = Path3(client, router, server, etc)
        path.resolv(SERVER)
        yield path


@contextmanager
def hostile_lab(path: Path3) -> Iterator[Path3]:
    """devtools/hostile_servers.py in the server namespace (its DNS addresses added to s0)."""
    with ExitStack() as stack:
        for address in hostile.DNS_ADDRESSES:
            path.server.ip("addr", "add", f"{address}/24", "dev", "s0")
            stack.callback(path.server.ip, "addr", "del", f"{address}/24", "dev", "s0")
        certs = tempfile.mkdtemp(prefix="cchostile")
        stack.callback(shutil.rmtree, certs, True)
        cert = str(Path(certs) / "server.pem")
        proc.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                  "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj",
                  "/CN=hostile.cc.test", "-keyout", cert, "-out", cert], timeout=60)
        child = path.server.popen([PYTHON, HOSTILE, SERVER, cert],
                                  stdout=open(os.devnull, "wb"), stderr=open(os.devnull, "wb"))
        stack.callback(child.wait, 10)
        stack.callback(proc.kill_group, child.pid)
        for port in hostile.HTTP_PORTS:
            wait_tcp(path.server, SERVER, port)
        wait_tcp(path.server, hostile.BIG_DNS, 53)
        yield path


def _start(topo: Topology, ns: Namespace, argv: list[str]) -> None:
    child = ns.popen(argv, stdout=open(os.devnull, "wb"), stderr=open(os.devnull, "wb"))
    topo.callback(child.wait, 10)
    topo.callback(proc.kill_group, child.pid)


def wait_tcp(ns: Namespace, host: str, port: int) -> None:
    probe = (f"import socket,time\nfor _ in range(100):\n try:\n  socket.create_connection("
             f"({host!r},{port}),0.2).close();break\n except OSError: time.sleep(0.05)")
    ns.run([sys.executable, "-c", probe], timeout=15)
