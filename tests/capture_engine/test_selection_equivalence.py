"""tcpdump, the raw-socket backend and the libpcap backend (the system's libpcap and the one
the zip carries) keep the same packets of one crafted mix, sent both ways over a veth pair.

The mix (craft.py): IPv4 and IPv6, TCP/UDP/ICMP, IPv4 options, first and later fragments
(IPv6 fragment headers too), truncated headers, ARP, 802.1Q-tagged copies, and each filter's
addresses and ports with their neighbours (a range's edges and one past them). Every frame
is sent once into the capture interface and once out of it, so each direction is selected.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import pytest

from capture_engine.errors import ProblemList
from capture_engine.filters import parse_filters
from devtools.netns import Namespace, Topology, veth
from devtools.zipbuild import build_zip, install_zip
from tests.capture_engine import craft, helpers
from tests.capture_engine.conftest import ROOT, reference_expression

pytestmark = pytest.mark.root

CASES: Dict[str, List[dict]] = {
    "everything": [],
    "udp-local-port-range": [{"protocol": "UDP", "localPort": "5000-5002"}],
    "tcp-remote-range-port-range": [{"protocol": "TCP", "remoteIPAddress":
                                     "10.199.0.2-10.199.0.9", "remotePort": "1024-2047"}],
    "v4-v6-lists-two-filters": [{"localIPAddress": "fd00:199::1;10.199.0.1",
                                 "remotePort": "53;443"},
                                {"protocol": "UDP", "remoteIPAddress": "fd00:199::2-fd00:199::ff"}],
}
# (tool, CAPTURE_LIBPCAP, --backend): ours, each compared with tcpdump's file.
OURS = (("rawsocket", "system", "rawsocket"), ("libpcap-system", "system", "libpcap"),
        ("libpcap-bundled", "bundled", "libpcap"))
VM_IF, PEER_IF = "cap0", "peer0"
SYSTEM_SONAME = "libpcap.so.0.8"  # pcaplib.SONAMES[0]: what Debian installs


@dataclass
class Run:
    frames: int
    tcpdump: Dict[str, str] = field(default_factory=dict)           # case -> pcap
    status: Dict[Tuple[str, str], dict] = field(default_factory=dict)  # (case, tool) -> status
    maps: Dict[Tuple[str, str], List[str]] = field(default_factory=dict)  # libpcap lines


def edges() -> List[bytes]:
    """Each range's first and last value and one past each, both ways round, plain and
    fragmented (a later fragment has no ports: no port filter may keep it)."""
    frames = []
    for remote in ("10.199.0.1", "10.199.0.2", "10.199.0.9", "10.199.0.10"):
        for port in (1023, 1024, 2047, 2048):
            for shape in ("plain", "fragment", "first-fragment"):
                frames.append(craft.frame(craft.VM4, remote, craft.TCP, 40000, port, shape))
                frames.append(craft.frame(remote, craft.VM4, craft.TCP, port, 40000, shape))
    for local in (craft.VM4, craft.VM6):
        peer = craft.PEER4 if local == craft.VM4 else "fd00:199::ff"
        for port in (4999, 5000, 5002, 5003):
            frames.append(craft.frame(local, peer, craft.UDP, port, 53, "plain"))
            frames.append(craft.frame(peer, local, craft.UDP, 53, port, "fragment"))
            frames.append(craft.frame(peer, local, craft.UDP, 53, port, "plain"))
    return frames


def mix() -> List[bytes]:
    problems = ProblemList()
    filters = [f for spec in CASES.values()
               for f in parse_filters(spec, "filters", problems)]
    assert not problems, problems.problems
    frames = [f.data for f in craft.corpus(filters, 400, seed=11)]
    frames += [f.data for f in craft.exact_matches(filters)] + edges()
    frames += [craft.vlan_tagged(data, 100 + n) for n, data in enumerate(frames[::6])]
    return frames


def _mac(ns: Namespace, interface: str) -> bytes:
    return bytes.fromhex(helpers.mac_address(ns, interface).replace(":", ""))


def send_both_ways(vm: Namespace, peer: Namespace, frames: List[bytes]) -> None:
    """Each frame into VM_IF (from the peer) and out of it, with the sender's MAC as source."""
    vm_mac, peer_mac = _mac(vm, VM_IF), _mac(peer, PEER_IF)
    senders = []
    for ns, interface, src, dst in ((peer, PEER_IF, peer_mac, vm_mac),
                                    (vm, VM_IF, vm_mac, peer_mac)):
        with ns.enter():
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        sock.bind((interface, 0))
        senders.append((sock, src, dst))
    try:
        for n, data in enumerate(frames):
            for sock, src, dst in senders:
                sock.send(dst + src + data[12:])
            if n % 50 == 49:
                time.sleep(0.02)  # bounded: the receivers' queues never fill
    finally:
        for sock, _, _ in senders:
            sock.close()


def _start_ours(vm: Namespace, tool: str, choice: str, backend: str, filters: List[dict],
                out: str, ext_dir: Path) -> subprocess.Popen:
    argv = [sys.executable, "-m", "capture_engine", "--netns", vm.name, "-i", VM_IF, "-w", out,
            "--backend", backend, "--json", "--time-limit", "120"]
    for f in filters:
        argv += ["--filter", json.dumps(f)]
    env = dict(os.environ, CAPTURE_LIBPCAP=choice)
    cwd = str(ROOT)
    if tool == "libpcap-bundled":  # the zip's code, loading the zip's libpcap
        cwd, env["PYTHONPATH"] = str(ext_dir), str(ext_dir)
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    helpers.wait_packet_socket(proc, vm.name)
    return proc


def _libpcap_maps(pid: int) -> List[str]:
    with open(f"/proc/{pid}/maps") as maps:
        return sorted({line.split()[-1] for line in maps if "libpcap" in line})


@pytest.fixture(scope="module")
def ext_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install_zip(build_zip(), tmp_path_factory.mktemp("waagent"))


@pytest.fixture(scope="module")
def pair() -> Iterator[Tuple[Namespace, Namespace]]:
    with Topology("pc11") as topo:
        vm, peer = topo.namespace("vm"), topo.namespace("peer")
        for ns in (vm, peer):  # no traffic of the kernel's own: only the mix is captured
            ns.run(["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1",
                    "net.ipv6.conf.all.disable_ipv6=1"])
        veth(vm, VM_IF, [], peer, PEER_IF, [])
        yield vm, peer


@pytest.fixture(scope="module")
def run(pair: Tuple[Namespace, Namespace], ext_dir: Path,
        tmp_path_factory: pytest.TempPathFactory) -> Run:
    vm, peer = pair
    folder = tmp_path_factory.mktemp("equivalence")
    frames = mix()
    result = Run(frames=len(frames))
    vm_mac = helpers.mac_address(vm, VM_IF)
    dumps, procs = {}, {}
    try:
        for case, specs in CASES.items():
            problems = ProblemList()
            parsed = list(parse_filters(specs, "filters", problems))
            result.tcpdump[case] = str(folder / f"tcpdump-{case}.pcap")
            dumps[case] = helpers.start_tcpdump(vm, VM_IF, result.tcpdump[case],
                                                reference_expression(parsed, vm_mac))
            for tool, choice, backend in OURS:
                proc = _start_ours(vm, tool, choice, backend, specs,
                                   str(folder / f"{tool}-{case}.cap"), ext_dir)
                procs[(case, tool)] = proc
                result.maps[(case, tool)] = _libpcap_maps(proc.pid)
        time.sleep(0.3)
        send_both_ways(vm, peer, frames)
        time.sleep(0.6)  # > the 200 ms ring block timeout: every block is handed over
        for key, proc in procs.items():
            result.status[key] = json.loads(helpers.stop_process(proc).decode())
    finally:
        for proc in list(procs.values()) + list(dumps.values()):
            if proc.poll() is None:
                helpers.stop_process(proc)
    return result


def _records(path: str) -> List[Tuple[bytes, int]]:
    return [(r.data, r.length) for r in helpers.read_pcap(path)]


@pytest.mark.parametrize("tool", [t for t, _, _ in OURS])
@pytest.mark.parametrize("case", list(CASES))
def test_same_packets_as_tcpdump_in_the_same_order(run: Run, case: str, tool: str) -> None:
    expected = _records(run.tcpdump[case])
    assert expected, f"{case}: tcpdump kept nothing of the mix: the case tests nothing"
    if case != "everything":
        assert len(expected) < 2 * run.frames, f"{case}: tcpdump kept everything: weak case"
    status = run.status[(case, tool)]
    assert status["packetCaptureStatus"] == "Stopped", status.get("errorMessage")
    got = _records(status["localPath"])
    first = next((n for n, (a, b) in enumerate(zip(got, expected)) if a != b),
                 min(len(got), len(expected)))
    assert got == expected, (
        f"{case}/{tool}: {len(got)} packets, tcpdump {len(expected)}; first difference at "
        f"#{first}: ours {got[first][0][:40].hex() if first < len(got) else None}, tcpdump "
        f"{expected[first][0][:40].hex() if first < len(expected) else None}")


def test_the_mix_has_every_kind_of_packet(run: Run) -> None:
    """What `everything` kept holds every shape the equivalence is claimed for."""
    kept = [data for data, _ in _records(run.tcpdump["everything"])]
    assert len(kept) == 2 * run.frames, f"tcpdump kept {len(kept)} of {2 * run.frames} frames"
    kinds = {
        "arp": any(d[12:14] == b"\x08\x06" for d in kept),
        "vlan": any(d[12:14] == b"\x81\x00" for d in kept),
        "ipv6-fragment": any(d[12:14] == b"\x86\xdd" and d[20] == craft.FRAGMENT6 for d in kept),
        "ipv4-later-fragment": any(d[12:14] == b"\x08\x00" and d[20:22] != b"\x00\x00"
                                   and d[20:22] != b"\x20\x00" for d in kept),
        "icmp": any(d[12:14] == b"\x08\x00" and d[23] == craft.ICMP for d in kept),
        "icmpv6": any(d[12:14] == b"\x86\xdd" and d[20] == craft.ICMP6 for d in kept),
    }
    missing = [kind for kind, present in kinds.items() if not present]
    assert not missing, f"the mix lacks {missing}"


def test_each_libpcap_capture_used_the_library_it_was_told_to(run: Run) -> None:
    for (case, tool), lines in run.maps.items():
        notes = " ".join(run.status[(case, tool)].get("notes", []))
        if tool == "rawsocket":
            assert not lines, f"{case}: the raw-socket process mapped libpcap: {lines}"
            assert "libpcap" not in notes, notes
        elif tool == "libpcap-bundled":
            assert lines and all("/capture_engine/_libpcap/" in line for line in lines), \
                f"{case}: the bundled capture mapped {lines}"
            assert "libpcap: bundled _libpcap/" in notes and "1.10.6" in notes, notes
        else:
            assert lines and not any("/capture_engine/_libpcap/" in line for line in lines), \
                f"{case}: the system capture mapped {lines}"
            assert f"libpcap: system {SYSTEM_SONAME}" in notes, notes
