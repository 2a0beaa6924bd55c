"""Interfaces changing under a running capture: set down, and Azure's enslaved VFs.

With Accelerated Networking each synthetic NIC (hv_netvsc) has a VF enslaved to it that
disappears during host servicing. The stand-in here: a bridge `eth0` with a veth `vf0` as its
port (master set), and a plain second NIC `eth1`, in namespaces of our own.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import pytest

from capture_engine.settings import parse_capture_settings
from devtools.netns import Namespace, Topology, veth
from tests.capture_engine import helpers, traffic
from tests.capture_engine.session_util import Running, start_session

pytestmark = pytest.mark.root
BACKENDS = ["libpcap", "rawsocket"]
VM_ETH0, PEER_ETH0 = "10.199.60.1", "10.199.60.2"
VM_ETH1, PEER_ETH1 = "10.199.61.1", "10.199.61.2"


@dataclass
class AzureNics:
    vm: Namespace
    peer: Namespace
    lab: traffic.Lab  # for traffic.blast (vm <- peer)

    def add_vf(self) -> None:
        """The VF (re)appears and is enslaved to eth0, as netvsc does after servicing."""
        veth(self.vm, "vf0", [], self.peer, "pvf0", [f"{PEER_ETH0}/24"])
        self.vm.ip("link", "set", "vf0", "master", "eth0")

    def remove_vf(self) -> None:
        self.vm.ip("link", "del", "vf0")  # its peer goes with it

    def blast(self, count: int, port: int, via: str = "eth0") -> None:
        vm_addr, peer_addr = (VM_ETH0, PEER_ETH0) if via == "eth0" else (VM_ETH1, PEER_ETH1)
        traffic.blast(self.lab, count, 80, port, 0.001, vm_addr=vm_addr, peer_addr=peer_addr)


@pytest.fixture
def nics():
    with Topology("crn") as topo:
        vm, peer = topo.namespace("vm"), topo.namespace("peer")
        vm.ip("link", "add", "eth0", "type", "bridge")
        vm.ip("addr", "add", f"{VM_ETH0}/24", "dev", "eth0")
        vm.ip("link", "set", "eth0", "up")
        veth(vm, "eth1", [f"{VM_ETH1}/24"], peer, "peth1", [f"{PEER_ETH1}/24"])
        setup = AzureNics(vm, peer, traffic.Lab(vm, peer, "eth0"))
        setup.add_vf()
        yield setup


def _start(nics: AzureNics, tmp_path, backend: str, name: str, settings=None,
           **session) -> Running:
    settings = {"name": name, "storageLocation": {"filePath": f"{name}.cap"}, **(settings or {})}
    request = parse_capture_settings(settings, capture_root=str(tmp_path))
    return start_session(nics.lab, request, backend, **session)


def _stop(running: Running, timeout: float = 30):
    running.stop.set()
    return running.finish(timeout)


def _to_port(path: str, port: int) -> int:
    return sum(1 for r in helpers.read_pcap(path)
               if len(r.data) >= 38 and r.data[23] == 17 and
               int.from_bytes(r.data[36:38], "big") == port)


def _still_running(running: Running) -> None:
    assert running.thread.is_alive(), f"the capture ended: {running.result.querystatus()}"
    assert running.progress[-1]["packetCaptureStatus"] == "Running", running.progress[-1]


@pytest.mark.parametrize("backend", BACKENDS)
def test_default_list_leaves_out_enslaved_vfs_so_no_packet_is_seen_twice(nics, tmp_path,
                                                                         backend):
    running = _start(nics, tmp_path, backend, "dflt")
    try:
        nics.blast(50, 7101)
        time.sleep(0.3)
    finally:
        result = _stop(running)
    assert result.ok, result.querystatus()
    seen = _to_port(result.local_path, 7101)
    assert seen == 50, f"50 datagrams sent over eth0 (via its VF), {seen} captured"
    assert result.interfaces == ("eth0", "eth1"), result.interfaces


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_vf_going_away_and_coming_back_never_ends_the_capture(nics, tmp_path, backend):
    running = _start(nics, tmp_path, backend, "servicing", progress_interval=0.2)
    try:
        nics.blast(20, 7102)
        nics.remove_vf()
        time.sleep(1.5)  # longer than the interface check interval
        _still_running(running)
        nics.add_vf()
        time.sleep(1.0)
        nics.blast(20, 7102)
        time.sleep(0.3)
        _still_running(running)
    finally:
        result = _stop(running)
    status = result.querystatus()
    assert status["packetCaptureStatus"] == "Stopped", status
    assert status["stopReason"] == "StoppedByRequest", status
    assert _to_port(result.local_path, 7102) == 40, "packets before and after servicing"


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_vf_chosen_by_name_is_captured_again_once_it_is_back(nics, tmp_path, backend):
    running = _start(nics, tmp_path, backend, "onvf", {"interfaces": ["vf0"]},
                     progress_interval=0.2)
    try:
        nics.blast(10, 7103)
        nics.remove_vf()
        time.sleep(1.5)
        _still_running(running)
        nics.add_vf()
        time.sleep(1.5)  # the capture re-attaches on its next interface check
        nics.blast(10, 7104)
        time.sleep(0.3)
    finally:
        result = _stop(running)
    status = result.querystatus()
    assert status["packetCaptureStatus"] == "Stopped", status
    assert _to_port(result.local_path, 7103) == 10, "packets before the VF went away"
    assert _to_port(result.local_path, 7104) == 10, "packets after the VF came back"


@pytest.mark.parametrize("chosen", ["explicit", "default"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_nic_set_down_ends_the_capture_with_interface_down(nics, tmp_path, backend, chosen):
    settings = {"timeLimitInSeconds": 8}
    if chosen == "explicit":
        settings["interfaces"] = ["eth1"]
    running = _start(nics, tmp_path, backend, "setdown", settings)
    try:
        nics.blast(10, 7105, via="eth1")
        nics.vm.ip("link", "set", "eth1", "down")
        result = running.finish(30)
    finally:
        running.stop.set()
    status = result.querystatus()
    assert status["stopReason"] == "InterfaceDown" and status["packetCaptureStatus"] == "Error", \
        status
    assert status["errorCode"] == 121 and status["packetCaptureError"] == ["CaptureFailed"], \
        status
    assert "eth1" in status["errorMessage"] and "down" in status["errorMessage"], status
    assert _to_port(result.local_path, 7105) == 10, "packets before the NIC went down are kept"
