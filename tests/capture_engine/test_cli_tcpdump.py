"""The CLI's -C/-G/-W/-z/-Q side by side with the real tcpdump, on the same bounded traffic."""
from __future__ import annotations

import gzip
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

import pytest

from devtools.netns import Topology, veth
from tests.capture_engine import helpers, traffic
from tests.capture_engine.conftest import ROOT

PORT = 7777
EXPRESSION = ["udp", "port", str(PORT)]  # no stray packet starts a -G file
BURSTS, BURST_PACKETS, PAYLOAD = 4, 750, 1400  # 750 x 1458-byte records: past -C 1 once
BUFFER_KIB = "32768"
CONFIGS = {
    "C": ["-C", "1", "-w", "f.pcap"],
    "CW": ["-C", "1", "-W", "2", "-w", "f.pcap"],
    "G": ["-G", "2", "-w", "g-%H%M%S.pcap"],
    "GW": ["-G", "2", "-W", "3", "-w", "g-%H%M%S.pcap"],
    "GC": ["-G", "2", "-C", "1", "-w", "g-%H%M%S.pcap"],
    "GCW": ["-G", "2", "-C", "1", "-W", "2", "-w", "g-%H%M%S.pcap"],
    "CZ": ["-C", "1", "-z", "gzip", "-w", "z.pcap"],
}
TIMED = ("G", "GW", "GC", "GCW")


@dataclass
class Side:
    folder: str
    proc: subprocess.Popen
    launched: float
    ready: float = 0.0
    out: bytes = b""
    err: bytes = b""


@dataclass
class Run:
    tcpdump: Dict[str, Side] = field(default_factory=dict)
    ours: Dict[str, Side] = field(default_factory=dict)


@pytest.fixture(scope="module")
def lab():
    if os.geteuid() != 0:
        pytest.skip("needs root")
    with Topology("cl11") as topo:
        vm, peer = topo.namespace("vm"), topo.namespace("peer")
        vm_addrs, peer_addrs = traffic.addresses()
        veth(vm, "cap0", vm_addrs, peer, "peer0", peer_addrs)
        yield traffic.Lab(vm, peer, "cap0")


def _start(lab, argv: List[str], folder: str) -> Side:
    os.makedirs(folder)
    launched = time.time()
    side = Side(folder, lab.vm.popen(argv, cwd=folder, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE,
                                     env={**os.environ, "PYTHONPATH": ROOT}), launched)
    helpers.wait_packet_socket(side.proc, lab.vm.name)
    deadline = time.monotonic() + 10
    while not os.listdir(folder) and time.monotonic() < deadline:
        time.sleep(0.02)  # ready: its first file is there
    side.ready = time.time()
    return side


def _tcpdump(lab, args: List[str], folder: str, *mode: str) -> Side:
    return _start(lab, ["tcpdump", "-i", lab.vm_if, "-n", "-Z", "root", "-B", BUFFER_KIB,
                        *mode, *args, *EXPRESSION], folder)


def _ours(lab, args: List[str], folder: str, backend: str, *mode: str) -> Side:
    return _start(lab, [sys.executable, "-m", "capture_engine", "-i", lab.vm_if, "--json",
                        "--backend", backend, "-B", BUFFER_KIB, *mode, *args, *EXPRESSION],
                  folder)


def _bursts(lab) -> None:
    """BURSTS bursts, each at x.2 s, the first 2 s after every capture began and the others
    3 s apart: each starts a -G 2 file in both captures. A burst's first ring blocks fill at
    once, so its first packet is read within the second it was sent; its last, in a partly
    filled block, may be read up to 1 s later (tcpdump's default timeout), still too early
    for the next -G 2 file."""
    time.sleep(2.0)
    for n in range(BURSTS):
        time.sleep(1.2 - time.time() % 1 + (2 if n else 0))
        traffic.blast(lab, BURST_PACKETS, PAYLOAD, port=PORT)


def _stop(side: Side) -> None:
    if side.proc.poll() is None:
        side.proc.send_signal(signal.SIGINT)
    try:
        side.out, side.err = side.proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(side.proc.pid, signal.SIGKILL)
        side.proc.communicate()
        raise AssertionError(f"{side.proc.args} did not stop on SIGINT") from None


@pytest.fixture(scope="module", params=["libpcap", "rawsocket"])
def run(request, lab, tmp_path_factory) -> Run:
    base, result = str(tmp_path_factory.mktemp(f"rot-{request.param}")), Run()
    try:
        for name, args in CONFIGS.items():
            result.tcpdump[name] = _tcpdump(lab, args, os.path.join(base, "tcpdump", name))
            result.ours[name] = _ours(lab, args, os.path.join(base, "ours", name),
                                      request.param)
        _bursts(lab)
        time.sleep(2.0)  # tcpdump reads a partly filled ring block after its 1 s timeout
    finally:
        for side in [*result.tcpdump.values(), *result.ours.values()]:
            _stop(side)
    return result


def _files(side: Side) -> Dict[str, int]:
    """name -> records (a .gz file: its records after gunzip)."""
    counts = {}
    for name in sorted(os.listdir(side.folder)):
        path = os.path.join(side.folder, name)
        if name.endswith(".gz"):
            with gzip.open(path) as packed, open(path + ".out", "wb") as plain:
                plain.write(packed.read())
            counts[name] = len(helpers.read_pcap(path + ".out"))
            os.unlink(path + ".out")
        else:
            counts[name] = len(helpers.read_pcap(path))
    return counts


def _split_first(side: Side, files: Dict[str, int], pattern: str) -> Tuple[str, Dict[str, int]]:
    """A -G capture's first file is named by the second it started in, which differs between
    two processes: it must be one of the seconds between launch and ready, and empty."""
    first = min(files)
    seconds = range(int(side.launched), int(side.ready) + 1)
    assert first in {time.strftime(pattern, time.localtime(t)) for t in seconds}, \
        f"{first} is not named by a second of the start ({side.launched}-{side.ready})"
    assert files[first] == 0, f"{first} holds packets sent before the first burst"
    return first, {k: v for k, v in files.items() if k != first}


def _wait_for_gzip(folder: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        names = os.listdir(folder)
        if not any(n + ".gz" in names for n in names) and \
                sum(not n.endswith(".gz") for n in names) == 1:
            return
        time.sleep(0.2)


@pytest.mark.root
@pytest.mark.parametrize("name", CONFIGS)
def test_same_files_as_tcpdump(run: Run, name: str):
    theirs, ours = run.tcpdump[name], run.ours[name]
    status = json.loads(ours.out)
    assert ours.proc.returncode == 0, ours.err.decode()
    assert theirs.proc.returncode == 0, theirs.err.decode()
    assert status["packetsDropped"] == 0 and b"\n0 packets dropped by kernel" in theirs.err, \
        (status, theirs.err)
    if name == "CZ":
        _wait_for_gzip(theirs.folder)
        _wait_for_gzip(ours.folder)
    want, got = _files(theirs), _files(ours)
    if name in TIMED:
        pattern = CONFIGS[name][-1] + ("0" if "-W" in CONFIGS[name] and "-C" in
                                       CONFIGS[name] else "")
        _, want = _split_first(theirs, want, pattern)
        _, got = _split_first(ours, got, pattern)
    assert got == want, f"{name}: tcpdump wrote {want}, we wrote {got}"
    assert sum(got.values()) > 0, "no traffic captured"
    if name == "GW":
        assert status["stopReason"] == "FileCountReached", status
        assert len(want) == 2, "-G -W 3: three files, the first before any traffic"


def _src_macs(path: str) -> set:
    return {record.data[6:12].hex(":") for record in helpers.read_pcap(path)}


@pytest.mark.root
@pytest.mark.parametrize("direction", ["in", "out"])
def test_direction_matches_tcpdump(lab, tmp_path, direction):
    sides = {"tcpdump": _tcpdump(lab, ["-Q", direction, "-w", "d.pcap"],
                                 str(tmp_path / "tcpdump"), "--immediate-mode")}
    for backend in ("libpcap", "rawsocket"):
        sides[backend] = _ours(lab, ["-Q", direction, "-w", "d.pcap", "--time-limit", "60"],
                               str(tmp_path / backend), backend, "--immediate-mode")
    try:
        traffic.udp(lab, "vm", "10.199.1.1", 40001, "10.199.1.2", PORT, 4)
        traffic.udp(lab, "peer", "10.199.1.2", 40002, "10.199.1.1", PORT, 6)
        time.sleep(0.5)
    finally:
        for side in sides.values():
            _stop(side)
    vm_mac = helpers.mac_address(lab.vm, lab.vm_if)
    want = helpers.read_pcap(os.path.join(sides["tcpdump"].folder, "d.pcap"))
    assert len(want) == (4 if direction == "out" else 6), f"tcpdump -Q {direction}: {len(want)}"
    for backend in ("libpcap", "rawsocket"):
        path = os.path.join(sides[backend].folder, "d.pcap")
        got = helpers.read_pcap(path)
        assert helpers.keys(got) == helpers.keys(want), \
            f"{backend} -Q {direction}: {len(got)} packets, tcpdump {len(want)}"
        assert (_src_macs(path) == {vm_mac}) == (direction == "out"), _src_macs(path)


def _ring_kib(pid: int) -> int:
    """The packet rings a process has mapped (the kernel capture buffer), in KiB."""
    total = 0
    with open(f"/proc/{pid}/maps") as maps:
        for line in maps:
            if "socket:[" in line:
                low, high = (int(part, 16) for part in line.split()[0].split("-"))
                total += (high - low) // 1024
    return total


@pytest.mark.root
@pytest.mark.parametrize("backend", ["libpcap", "rawsocket"])
@pytest.mark.parametrize("immediate", [False, True])
def test_buffer_size_maps_the_ring_tcpdump_maps(lab, tmp_path, backend, immediate):
    mode = ["--immediate-mode"] if immediate else []
    sides = {"tcpdump": _start(lab, ["tcpdump", "-i", lab.vm_if, "-Z", "root", "-B", "4096",
                                     *mode, "-w", "b.pcap"], str(tmp_path / "tcpdump")),
             "ours": _start(lab, [sys.executable, "-m", "capture_engine", "-i", lab.vm_if,
                                  "--backend", backend, "-B", "4096", *mode, "-w", "b.pcap",
                                  "--time-limit", "60"], str(tmp_path / "ours")),
             "default": _start(lab, [sys.executable, "-m", "capture_engine", "-i", lab.vm_if,
                                     "--backend", backend, "-w", "b.pcap",
                                     "--time-limit", "60"], str(tmp_path / "default"))}
    try:
        sizes = {name: _ring_kib(side.proc.pid) for name, side in sides.items()}
    finally:
        for side in sides.values():
            _stop(side)
    assert sizes["default"] == 32768, f"the default ring is 32 MiB: {sizes}"
    if backend == "libpcap" or not immediate:
        assert sizes["ours"] == sizes["tcpdump"], f"-B 4096 maps what tcpdump maps: {sizes}"
    else:  # libpcap doubles its ring in immediate mode (TPACKET_V2); ours stays at -B
        assert sizes["ours"] == 4096, sizes


def _latencies(lab, path: str, count: int) -> List[float]:
    """Seconds from sending each of `count` lone datagrams to its record in the file."""
    seen, result = os.path.getsize(path), []
    with traffic.bound(lab, "vm", "10.199.1.1", socket.SOCK_DGRAM, PORT), \
            traffic.bound(lab, "peer", "10.199.1.2", socket.SOCK_DGRAM) as out:
        for n in range(count):
            time.sleep(0.05 + 0.037 * n)  # at different points of a 200 ms block period
            sent = time.monotonic()
            out.sendto(b"x" * 64, ("10.199.1.1", PORT))
            deadline = sent + 2
            while os.path.getsize(path) == seen and time.monotonic() < deadline:
                time.sleep(0.002)
            result.append(time.monotonic() - sent)
            seen = os.path.getsize(path)
    return result


@pytest.mark.root
@pytest.mark.parametrize("backend", ["libpcap", "rawsocket"])
def test_immediate_mode_writes_each_packet_at_once(lab, tmp_path, backend):
    side = _ours(lab, ["-w", "i.pcap", "--time-limit", "60"], str(tmp_path / "i"), backend,
                 "--immediate-mode")
    try:
        latencies = _latencies(lab, str(tmp_path / "i" / "i.pcap"), 8)
    finally:
        _stop(side)
    # Without it a packet waits for its ring block to be retired (200 ms) and a nap (50 ms):
    # eight packets sent at different points of that period cannot all beat 100 ms.
    assert max(latencies) < 0.1, f"latencies {[round(x, 3) for x in latencies]}"
    assert len(helpers.read_pcap(str(tmp_path / "i" / "i.pcap"))) == 8


@pytest.mark.root
def test_failing_postrotate_command_is_reported_not_fatal(lab, tmp_path):
    folder = tmp_path / "z"
    side = _ours(lab, ["-C", "1", "-z", "false", "-w", "z.pcap", "--time-limit", "60"],
                 str(folder), "rawsocket")
    try:
        traffic.blast(lab, 1500, PAYLOAD, port=PORT)
        time.sleep(0.5)
    finally:
        _stop(side)
    err = side.err.decode()
    assert side.proc.returncode == 0, err
    assert sorted(os.listdir(folder)) == ["z.pcap", "z.pcap1", "z.pcap2"], os.listdir(folder)
    assert err.count("warning: -z false") == 2, err
    assert "warning: -z false z.pcap: exited with 1" in err, \
        f"-z gets the name as -w gave it (relative), as tcpdump's: {err}"
    assert sum(len(helpers.read_pcap(str(folder / n))) for n in os.listdir(folder)) == 1500
