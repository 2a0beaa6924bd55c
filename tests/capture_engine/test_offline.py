"""-r FILE: a saved capture re-filtered selects exactly what `tcpdump -r FILE -w OUT EXPR` does.

The input mixes IPv4/IPv6, TCP/UDP/ICMP, ARP, VLAN-tagged frames, fragments and ports at the
edges of the ranges tested; Network Watcher filters are compared with tcpdump's expression
for either direction (a file holds no direction: local is either end).
"""
from __future__ import annotations

import json
import os
import random
import struct
import subprocess
import sys
from typing import List, Tuple

import dpkt
import pytest

from capture_engine.errors import ProblemList
from capture_engine.filters import INBOUND, OUTBOUND, parse_filters, tcpdump_expression
from capture_engine.pcapfile import RECORD_HEADER, file_header
from capture_engine.pcapng import PcapngFormat
from tests.capture_engine import craft, helpers
from tests.capture_engine.conftest import ROOT
from tests.capture_engine.test_pcapng import read_blocks, tshark_interfaces

CLI = [sys.executable, "-m", "capture_engine"]
V4 = ["10.199.4.0", "10.199.4.1", "10.199.4.20", "10.199.4.21", "10.199.4.255",
      "10.199.3.255", "10.199.5.0", "192.0.2.9"]
V6 = ["fd00:199:5::", "fd00:199:5::1", "fd00:199:5:0:ffff:ffff:ffff:ffff", "fd00:199:5:1::",
      "fd00:199:4:ffff:ffff:ffff:ffff:ffff", "2001:db8::9"]
PORTS = [0, 53, 79, 80, 81, 1023, 1024, 2048, 2049, 5353, 65535]
SHAPES = [s for s in craft.SHAPES if s != "truncated"]
START_US = 1_700_000_000_000_000


def _vlan(frame: bytes, vid: int = 5) -> bytes:
    return frame[:12] + struct.pack("!HH", 0x8100, vid) + frame[12:]


def mixed_frames(count: int = 700, seed: int = 11) -> List[bytes]:
    rng = random.Random(seed)
    frames = [craft.arp(), _vlan(craft.arp())]
    for _ in range(count):
        pool = V4 if rng.random() < 0.55 else V6
        src, dst = rng.choice(pool), rng.choice(pool)
        proto = rng.choice((craft.TCP, craft.UDP, craft.UDP, craft.ICMP))
        frame = craft.frame(src, dst, proto, rng.choice(PORTS), rng.choice(PORTS),
                            rng.choice(SHAPES))
        if rng.random() < 0.5:  # the other way: sent by the VM (--local-mac MAC_A)
            frame = craft.MAC_B + craft.MAC_A + frame[12:]
        frames.append(_vlan(frame) if rng.random() < 0.08 else frame)
    return frames


def write_pcap(path: str, frames: List[bytes]) -> None:
    with open(path, "wb") as out:
        out.write(file_header(262144))
        for n, frame in enumerate(frames):
            ts = START_US + n * 1000
            out.write(RECORD_HEADER.pack(ts // 1_000_000, ts % 1_000_000, len(frame),
                                         len(frame)) + frame)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("offline")
    frames = mixed_frames()
    pcap, ng = str(folder / "mixed.pcap"), str(folder / "mixed.pcapng")
    write_pcap(pcap, frames)
    with open(ng, "wb") as out:  # dpkt's own pcapng writer (nanosecond-free, one interface)
        writer = dpkt.pcapng.Writer(out)
        for n, frame in enumerate(frames):
            writer.writepkt(frame, ts=(START_US + n * 1000) / 1e6)
    return pcap, ng


def _cli(args: List[str], cwd: str) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + args, cwd=cwd, capture_output=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": ROOT})


def _ours(source: str, out: str, args: List[str]) -> List[Tuple[int, int, bytes]]:
    done = _cli(["-r", source, "-w", out] + args, os.path.dirname(out))
    assert done.returncode == 0, done.stderr.decode()
    return [(r.ts_us, r.length, r.data) for r in helpers.read_pcap(out)]


def _tcpdump(source: str, out: str, expression: str) -> List[Tuple[int, int, bytes]]:
    return [(r.ts_us, r.length, r.data) for r in helpers.tcpdump_filter(source, expression, out)]


EXPRESSIONS = ["udp", "tcp port 80", "portrange 1024-2048", "net 10.199.4.0/24",
               "ip6 and src net fd00:199:5::/64", "icmp or icmp6", "arp", "vlan",
               "ip[6:2] & 0x1fff != 0", "not ip and not ip6", "vlan and arp"]


@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_expression_selects_what_tcpdump_selects(inputs, tmp_path, expression):
    pcap, _ = inputs
    want = _tcpdump(pcap, str(tmp_path / "ref.pcap"), expression)
    got = _ours(pcap, str(tmp_path / "ours.pcap"), [expression])
    assert 0 < len(want) < len(mixed_frames()), f"{expression}: weak case ({len(want)})"
    assert got == want, f"{expression}: ours {len(got)} packets, tcpdump {len(want)}"


NW_FORMS = {
    "tcp-remote-80": [{"protocol": "TCP", "remotePort": "80"}],
    "cidr-and-port-range": [{"localIPAddress": "10.199.4.0/24", "localPort": "1024-2048"}],
    "v6-cidr-or-udp-list": [{"remoteIPAddress": "fd00:199:5::/64"},
                            {"protocol": "UDP", "remotePort": "53;5353"}],
    "v4-range-udp": [{"localIPAddress": "10.199.4.1-10.199.4.20", "protocol": "UDP"}],
    "any-ports-edge": [{"localPort": "79-81", "remotePort": "0;65535"}],
}


@pytest.mark.parametrize("form", list(NW_FORMS))
def test_network_watcher_filters_select_what_tcpdump_selects(inputs, tmp_path, form):
    pcap, ng = inputs
    problems = ProblemList()
    parsed = parse_filters(NW_FORMS[form], "filters", problems)
    assert not problems
    expression = f"({tcpdump_expression(parsed, OUTBOUND)}) or " \
                 f"({tcpdump_expression(parsed, INBOUND)})"
    want = _tcpdump(pcap, str(tmp_path / "ref.pcap"), expression)
    flags = [arg for f in NW_FORMS[form] for arg in ("--filter", json.dumps(f))]
    got = _ours(pcap, str(tmp_path / "ours.pcap"), flags)
    assert 0 < len(want) < len(mixed_frames()), f"{form}: weak case ({len(want)})"
    assert got == want, f"{form}: ours {len(got)}, tcpdump {len(want)} with {expression!r}"
    from_ng = _ours(ng, str(tmp_path / "from-ng.pcap"), flags)
    assert from_ng == want, f"{form}: the pcapng input selects {len(from_ng)}, not {len(want)}"


def test_summary_without_output_counts_the_matches(inputs, tmp_path):
    pcap, _ = inputs
    want = _tcpdump(pcap, str(tmp_path / "ref.pcap"), "udp and net 10.199.4.0/24")
    done = _cli(["-r", pcap, "--json", "--protocol", "UDP", "--local-ip", "10.199.4.0/24"],
                str(tmp_path))
    assert done.returncode == 0, done.stderr.decode()
    summary = json.loads(done.stdout.decode())
    assert summary["packetsRead"] == len(mixed_frames()), summary
    assert summary["packetsMatched"] == len(want) > 0, summary
    done = _cli(["-r", pcap, "-c", "3", "udp"], str(tmp_path))
    assert done.returncode == 0 and "3 of" in done.stdout.decode(), done.stdout.decode()


def test_snaplen_and_count_apply_to_the_output(inputs, tmp_path):
    pcap, _ = inputs
    want = _tcpdump(pcap, str(tmp_path / "ref.pcap"), "tcp")[:5]
    got = _ours(pcap, str(tmp_path / "ours.pcap"), ["-s", "40", "-c", "5", "tcp"])
    assert got == [(ts, length, data[:40]) for ts, length, data in want], got[:2]


def test_pcapng_input_keeps_its_interfaces_in_pcapng_output(tmp_path):
    fmt = PcapngFormat(("eth0", "eth1"))
    frames = mixed_frames(60, seed=3)
    records = [RECORD_HEADER.pack(1_700_000_000 + n, 0, len(f), len(f)) + f
               for n, f in enumerate(frames)]
    source = str(tmp_path / "two.pcapng")
    with open(source, "wb") as out:
        out.write(fmt.file_header(262144))
        for n, record in enumerate(records):
            out.write(fmt.encode(record, ("eth0", "eth1")[n % 2]))
    out = str(tmp_path / "udp.pcapng")
    done = _cli(["-r", source, "-w", out, "--pcapng", "udp"], str(tmp_path))
    assert done.returncode == 0, done.stderr.decode()
    names, packets = read_blocks(out)
    assert names == ["eth0", "eth1"], names
    classic = str(tmp_path / "two.pcap")
    write_pcap(classic, frames)
    picked = [(ts - START_US) // 1000 for ts, _, _ in
              _tcpdump(classic, str(tmp_path / "ref.pcap"), "udp")]
    udp = [(n % 2, frames[n]) for n in picked]
    assert [(i, d) for i, _, d in packets] == udp and udp, (len(packets), len(udp))
    assert [name for name, _ in tshark_interfaces(out)] == [names[i] for i, _ in udp]


def _seconds_pcapng() -> bytes:
    """A packet stamped 2^63 seconds after 1970 (if_tsresol 0: ticks are seconds)."""
    frame = craft.arp() + bytes(2)  # 44 bytes: no padding
    idb = struct.pack("<IIHHI", 1, 32, 1, 0, 0) + struct.pack("<HHB3x", 9, 1, 0) + \
        struct.pack("<HHI", 0, 0, 32)
    epb = struct.pack("<7I", 6, 32 + len(frame), 0, 1 << 31, 0, len(frame), len(frame)) + \
        frame + struct.pack("<I", 32 + len(frame))
    return bytes.fromhex("0a0d0d0a1c0000004d3c2b1a01000000ffffffffffffffff1c000000") + idb + epb


def _damaged(tmp_path, name: str, data: bytes) -> str:
    path = str(tmp_path / name)
    with open(path, "wb") as out:
        out.write(data)
    return path


@pytest.mark.parametrize("make,code,words", [
    (lambda p: str(p / "missing.pcap"), "error 132", ["missing.pcap"]),
    (lambda p: _damaged(p, "text.pcap", b"hello, not a capture\n" * 3), "error 132",
     ["not a pcap or pcapng"]),
    (lambda p: _damaged(p, "cut.pcap", file_header(65535) + RECORD_HEADER.pack(0, 0, 60, 60)
                        + b"x" * 10), "error 132", ["truncated"]),
    (lambda p: _damaged(p, "raw.pcap", struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0,
                                                   65535, 101)), "error 111", ["link type 101"]),
    (lambda p: _damaged(p, "idb.pcapng", bytes.fromhex(
        "0a0d0d0a1c0000004d3c2b1a01000000ffffffffffffffff1c000000") +
        struct.pack("<III", 1, 12, 12)), "error 132", ["damaged"]),
    (lambda p: _damaged(p, "seconds.pcapng", _seconds_pcapng()), "error 132", ["timestamp"]),
])
def test_unreadable_input_is_a_coded_error(tmp_path, make, code, words):
    done = _cli(["-r", make(tmp_path), "udp"], str(tmp_path))
    err = done.stderr.decode()
    assert done.returncode == 1 and code in err, err
    assert all(w in err for w in words) and "Traceback" not in err, err


@pytest.mark.parametrize("args,field", [(["-i", "eth0"], "-i"), (["--ring", "2"], "--ring"),
                                        (["--netns", "x"], "--netns")])
def test_live_only_flags_are_refused_with_r(inputs, tmp_path, args, field):
    pcap, _ = inputs
    done = _cli(["-r", pcap] + args, str(tmp_path))
    err = done.stderr.decode()
    assert done.returncode == 2 and "error 100" in err and field in err, err


def test_nanosecond_and_big_endian_inputs_are_read(tmp_path):
    frames = mixed_frames(30, seed=5)
    stamps = [1_700_000_000_123_456_789 + n * 1_000_001 for n in range(len(frames))]
    big = str(tmp_path / "big-ns.pcap")
    with open(big, "wb") as out:
        out.write(struct.pack(">IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 1))
        for ns, frame in zip(stamps, frames):
            out.write(struct.pack(">IIII", ns // 10 ** 9, ns % 10 ** 9, len(frame),
                                  len(frame) + 3) + frame)
    ng = str(tmp_path / "ns.pcapng")  # if_tsresol 9: nanosecond ticks
    with open(ng, "wb") as out:
        out.write(bytes.fromhex("0a0d0d0a1c0000004d3c2b1a01000000ffffffffffffffff1c000000"))
        out.write(struct.pack("<IIHHI", 1, 32, 1, 0, 0) + struct.pack("<HHB3x", 9, 1, 9)
                  + struct.pack("<HH", 0, 0) + struct.pack("<I", 32))
        for ns, frame in zip(stamps, frames):
            pad = -len(frame) % 4
            total = 32 + len(frame) + pad
            out.write(struct.pack("<7I", 6, total, 0, ns >> 32, ns & 0xFFFFFFFF, len(frame),
                                  len(frame) + 3) + frame + bytes(pad) + struct.pack("<I", total))
    want = [(ns // 1000, len(f) + 3, f) for ns, f in zip(stamps, frames)]
    for source in (big, ng):
        got = _ours(source, str(tmp_path / (os.path.basename(source) + ".out")), [])
        assert got == want, f"{source}: {got[:1]} != {want[:1]}"


VM_MAC = ":".join(f"{b:02x}" for b in craft.MAC_A)


@pytest.mark.parametrize("form", list(NW_FORMS))
def test_local_mac_gives_each_packet_its_direction(inputs, tmp_path, form):
    """--local-mac: a packet from the VM's MAC was sent (local = source), any other received
    (local = destination) - the live capture's semantics, against tcpdump reading the
    direction from the source MAC."""
    pcap, _ = inputs
    problems = ProblemList()
    parsed = parse_filters(NW_FORMS[form], "filters", problems)
    sent, received = (tcpdump_expression(parsed, way) for way in (OUTBOUND, INBOUND))
    expression = f"(ether src {VM_MAC} and ({sent})) or (not ether src {VM_MAC} and " \
                 f"({received}))"
    want = _tcpdump(pcap, str(tmp_path / "ref.pcap"), expression)
    blind = _tcpdump(pcap, str(tmp_path / "blind.pcap"), f"({sent}) or ({received})")
    assert 0 < len(want) < len(blind), f"{form}: the direction changes nothing here"
    flags = [arg for f in NW_FORMS[form] for arg in ("--filter", json.dumps(f))]
    got = _ours(pcap, str(tmp_path / "ours.pcap"), flags + ["--local-mac", VM_MAC.upper()])
    assert got == want, f"{form}: ours {len(got)}, tcpdump {len(want)} with {expression!r}"
    shown = _cli(["-r", pcap, "-d", "--local-mac", VM_MAC] + flags, str(tmp_path))
    assert f"tcpdump expression: {expression}\n" in shown.stdout.decode(), shown.stdout


@pytest.mark.parametrize("args,field", [
    (["--local-mac", "02:00:00:00:00"], "--local-mac"),
    (["--local-mac", "02:00:00:00:00:01", "udp"], "--local-mac"),
])
def test_bad_local_mac_is_refused(inputs, tmp_path, args, field):
    pcap, _ = inputs
    done = _cli(["-r", pcap, "--remote-port", "53"] + args if "udp" not in args else
                ["-r", pcap] + args, str(tmp_path))
    err = done.stderr.decode()
    assert done.returncode == 2 and "error 100" in err and field in err, err


def test_local_mac_is_only_for_r(tmp_path):
    done = _cli(["-w", "x.cap", "--local-mac", VM_MAC, "--remote-port", "53"], str(tmp_path))
    err = done.stderr.decode()
    assert done.returncode == 2 and "error 100" in err and "--local-mac" in err, err


@pytest.mark.parametrize("kind", ["pcap", "pcapng"])
def test_a_truncated_file_keeps_what_came_before(tmp_path, kind):
    frames = mixed_frames(10, seed=7)
    source = str(tmp_path / f"cut.{kind}")
    write_pcap(source, frames)
    if kind == "pcapng":
        fmt = PcapngFormat(["eth0"])
        with open(source, "rb") as stream:
            classic = stream.read()[24:]
        with open(source, "wb") as out:
            out.write(fmt.file_header(65535) + fmt.encode(classic, "eth0"))
    with open(source, "r+b") as stream:
        stream.truncate(os.path.getsize(source) - 5)
    out = str(tmp_path / "out.pcap")
    done = _cli(["-r", source, "-w", out], str(tmp_path))
    err = done.stderr.decode()
    assert done.returncode == 1 and "error 132" in err and "truncated" in err, err
    assert [r.data for r in helpers.read_pcap(out)] == frames[:-1]


@pytest.mark.parametrize("kind", ["pcap", "pcapng"])
def test_damaged_files_never_raise_anything_but_coded_errors(tmp_path, kind):
    from capture_engine.errors import InputFileError, UnsupportedLinkTypeError
    from capture_engine.offline import OfflineJob, run

    frames = mixed_frames(12, seed=9)
    fmt = PcapngFormat(["eth0", "eth1"])
    classic = b"".join(RECORD_HEADER.pack(n, 0, len(f), len(f)) + f for n, f in enumerate(frames))
    good = file_header(65535) + classic if kind == "pcap" else \
        fmt.file_header(65535) + fmt.encode(classic, "eth1")
    rng = random.Random(kind)
    path = str(tmp_path / "fuzz")
    outcomes = set()
    for n in range(400):
        data = bytearray(good)
        for _ in range(rng.randint(1, 6)):
            data[rng.randrange(4, len(data))] = rng.randrange(256)
        if rng.random() < 0.3:
            data = data[:rng.randrange(4, len(data))]
        with open(path, "wb") as out:
            out.write(data)
        job = OfflineJob(path, str(tmp_path / f"out{n}.pcapng"), 0, 1 << 30, None,
                         True, (), None)
        try:
            outcomes.add(run(job).read == len(frames))
        except (InputFileError, UnsupportedLinkTypeError) as exc:
            outcomes.add(type(exc).__name__)
    assert "InputFileError" in outcomes, outcomes


def test_an_output_that_cannot_be_created_is_a_coded_error(inputs, tmp_path):
    pcap, _ = inputs
    (tmp_path / "plain").write_text("a file, not a folder")
    done = _cli(["-r", pcap, "-w", str(tmp_path / "plain" / "out.pcap"), "udp"],
                str(tmp_path))
    err = done.stderr.decode()
    assert done.returncode == 1 and "error 130" in err and "Traceback" not in err, err
    new = tmp_path / "new" / "folder" / "out.pcap"  # created, as a live capture does
    done = _cli(["-r", pcap, "-w", str(new), "udp"], str(tmp_path))
    assert done.returncode == 0 and helpers.read_pcap(str(new)), done.stderr.decode()
