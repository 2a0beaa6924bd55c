"""Test helpers: pcap reading, packet-socket readiness, tcpdump runs."""
from __future__ import annotations

import collections
import os
import signal
import struct
import subprocess
from dataclasses import dataclass
from typing import Counter, List, Optional, Sequence

from devtools.packetsockets import packet_sockets, wait_packet_socket  # noqa: F401 - re-exported


@dataclass(frozen=True)
class Record:
    ts_us: int
    caplen: int
    length: int
    data: bytes


def read_pcap(path: str) -> List[Record]:
    with open(path, "rb") as stream:
        blob = stream.read()
    magic, _, _, _, _, _, linktype = struct.unpack_from("<IHHiIII", blob, 0)
    assert magic == 0xA1B2C3D4, f"{path}: not a classic little-endian µs pcap ({magic:#x})"
    assert linktype == 1, f"{path}: link type {linktype}, expected Ethernet (1)"
    records, offset = [], 24
    while offset < len(blob):
        assert offset + 16 <= len(blob), f"{path}: truncated record header at {offset}"
        sec, usec, caplen, length = struct.unpack_from("<IIII", blob, offset)
        data = blob[offset + 16:offset + 16 + caplen]
        assert len(data) == caplen, f"{path}: truncated record data at {offset}"
        records.append(Record(sec * 1_000_000 + usec, caplen, length, data))
        offset += 16 + caplen
    return records


def in_window(records: Sequence[Record], start: float, end: float) -> List[Record]:
    lo, hi = int(start * 1e6), int(end * 1e6)
    return [r for r in records if lo <= r.ts_us <= hi]


def keys(records: Sequence[Record], snaplen: int = 0) -> Counter:
    """A multiset of (stored bytes, wire length): what a capture holds, ignoring timestamps."""
    cut = snaplen or 1 << 30
    return collections.Counter((r.data[:cut], r.length) for r in records)


def describe(counter: Counter, limit: int = 5) -> str:
    return "; ".join(f"{len(d)}B/{n}x {d[12:40].hex()}" for (d, _), n in
                     list(counter.items())[:limit])


def start_tcpdump(ns, interface: str, path: str, expression: str = "",
                  snaplen: int = 0) -> subprocess.Popen:
    argv = ["tcpdump", "-i", interface, "-n", "-s", str(snaplen), "-B", "32768",
            "--immediate-mode", "-U",
            "-w", path]
    if expression:
        argv.append(expression)
    proc = ns.popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_packet_socket(proc, ns.name)
    return proc


def stop_process(proc: subprocess.Popen, timeout: float = 15) -> bytes:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise AssertionError(f"{proc.args} did not stop on SIGINT within {timeout}s") from None
    stats = [line for line in (err or b"").decode(errors="replace").splitlines()
             if "dropped by kernel" in line]
    assert not stats or stats[0].startswith("0 "), f"{proc.args[:6]} lost packets: {stats}"
    return out or b""


def tcpdump_filter(ref: str, expression: str, out: str) -> List[Record]:
    """What tcpdump keeps of the reference capture with `expression`."""
    argv = ["tcpdump", "-r", ref, "-w", out] + ([expression] if expression else [])
    done = subprocess.run(argv, capture_output=True, timeout=30)
    assert done.returncode == 0, f"tcpdump rejected {expression!r}: {done.stderr.decode()}"
    return read_pcap(out)


def mac_address(ns, interface: str) -> str:
    """The MAC address of `interface` in namespace `ns` (aa:bb:...)."""
    return ns.run(["cat", f"/sys/class/net/{interface}/address"]).stdout.strip()


def maps_mention(pid: int, word: str) -> Optional[str]:
    with open(f"/proc/{pid}/maps") as maps:
        for line in maps:
            if word in line:
                return line.strip()
    return None
