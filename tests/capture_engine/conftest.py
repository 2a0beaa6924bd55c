"""Fixtures: two namespaces joined by a veth pair, and one live run captured every way."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Dict, List

import pytest

from capture_engine.filters import INBOUND, OUTBOUND, CaptureFilter, tcpdump_expression
from capture_engine.session import run_capture
from capture_engine.settings import parse_capture_settings
from devtools.netns import Topology, veth
from tests.capture_engine import helpers, traffic

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# A representative subset captured live by tcpdump and both backends side by side.
LIVE_CASES = {
    "everything": ([], 0),
    "tcp-remote-port-list": ([{"protocol": "TCP", "remotePort": "80;443"}], 0),
    "udp-local-ip-range": ([{"protocol": "UDP", "localIPAddress": "10.199.1.1-10.199.1.9"}], 0),
    "any-remote-ipv6": ([{"protocol": "Any", "remoteIPAddress": "fd00:199:1::2"}], 0),
    "two-filters-snap34": ([{"protocol": "TCP", "localPort": "22"},
                            {"protocol": "UDP", "remotePort": "5000-5002"}], 34),
    "remote-ip-list": ([{"remoteIPAddress": "10.199.1.2;10.199.1.4;"}], 0),
}


@pytest.fixture(scope="session")
def lab():
    if os.geteuid() != 0:
        pytest.skip("needs root")
    with Topology("cpe") as topo:
        vm, peer = topo.namespace("vm"), topo.namespace("peer")
        vm_addrs, peer_addrs = traffic.addresses()
        veth(vm, "cap0", vm_addrs, peer, "peer0", peer_addrs)
        veth(vm, "cap1", [f"{traffic.VM_SECOND}/24"], peer, "peer1",
             [f"{traffic.PEER_SECOND}/24"])
        yield traffic.Lab(vm, peer, "cap0")


@dataclass
class LiveRun:
    folder: str
    ref: str
    start: float = 0.0
    end: float = 0.0
    tcpdump: Dict[str, str] = field(default_factory=dict)
    libpcap: Dict[str, object] = field(default_factory=dict)     # case -> CaptureResult
    raw: Dict[str, dict] = field(default_factory=dict)           # case -> CLI --json status
    raw_maps: Dict[str, object] = field(default_factory=dict)    # case -> libpcap line or None


def _start_engine(lab, case: str, filters: List[dict], snaplen: int, folder: str, run: LiveRun):
    settings = {"name": f"lp-{case}", "bytesToCapturePerPacket": snaplen, "filters": filters,
                "storageLocation": {"filePath": f"lp-{case}.cap"}, "interfaces": [lab.vm_if]}
    request = parse_capture_settings(settings, capture_root=folder)
    stop, ready = threading.Event(), threading.Event()

    def progress(status: dict) -> None:
        if status["packetCaptureStatus"] != "NotStarted":
            ready.set()

    def work() -> None:
        run.libpcap[case] = run_capture(request, stop_event=stop, on_progress=progress,
                                        backend="libpcap", netns=lab.vm.name)
        ready.set()
    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    assert ready.wait(15), f"libpcap session {case} did not start"
    return stop, thread


def _start_cli(lab, case: str, filters: List[dict], snaplen: int, folder: str):
    argv = [sys.executable, "-m", "capture_engine", "--netns", lab.vm.name, "-i", lab.vm_if,
            "-w", os.path.join(folder, f"raw-{case}.cap"), "-s", str(snaplen),
            "--backend", "rawsocket", "--json", "--time-limit", "120"]
    for f in filters:
        argv += ["--filter", json.dumps(f)]
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    helpers.wait_packet_socket(proc, lab.vm.name)
    return proc


def reference_expression(filters: List[CaptureFilter], vm_mac: str) -> str:
    """tcpdump's expression for the filters, the direction read from the source MAC (the
    VM's NIC sends every `outbound` packet): a live tcpdump with `outbound`/`inbound` drops
    the first packet its kernel filter passes, as libpcap re-filters the first ring frame in
    user space, where the direction cannot be read."""
    sent, received = (tcpdump_expression(filters, way) for way in (OUTBOUND, INBOUND))
    if not sent:
        return ""
    return f"(ether src {vm_mac} and ({sent})) or (not ether src {vm_mac} and ({received}))"


@pytest.fixture(scope="session")
def live(lab, tmp_path_factory) -> LiveRun:
    """One traffic run captured by tcpdump (reference and filtered) and both backends."""
    from capture_engine.errors import ProblemList
    from capture_engine.filters import parse_filters

    folder = str(tmp_path_factory.mktemp("live"))
    run = LiveRun(folder, os.path.join(folder, "ref.pcap"))
    dumps = {"ref": helpers.start_tcpdump(lab.vm, lab.vm_if, run.ref)}
    engines, clis = {}, {}
    vm_mac = helpers.mac_address(lab.vm, lab.vm_if)
    for case, (filters, snaplen) in LIVE_CASES.items():
        problems = ProblemList()
        expression = reference_expression(list(parse_filters(filters, "filters", problems)),
                                          vm_mac)
        run.tcpdump[case] = os.path.join(folder, f"tcpdump-{case}.pcap")
        # tcpdump keeps whole packets: with a snap length below what its filter reads,
        # libpcap re-filters the first ring frame on truncated bytes and drops matches.
        dumps[case] = helpers.start_tcpdump(lab.vm, lab.vm_if, run.tcpdump[case], expression)
        engines[case] = _start_engine(lab, case, filters, snaplen, folder, run)
        clis[case] = _start_cli(lab, case, filters, snaplen, folder)
    for case, proc in clis.items():
        run.raw_maps[case] = helpers.maps_mention(proc.pid, "libpcap")
    time.sleep(0.3)
    run.start = time.time()
    traffic.generate(lab)
    run.end = time.time()
    time.sleep(0.3)
    for stop, _ in engines.values():
        stop.set()
    for case, proc in clis.items():
        out = helpers.stop_process(proc)
        run.raw[case] = json.loads(out.decode())
    for _, thread in engines.values():
        thread.join(15)
    for proc in dumps.values():
        helpers.stop_process(proc)
    return run


@pytest.fixture
def tiny_fs(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], check=True)
    try:
        yield str(mount)
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
