"""Connectivity benchmark: probe latency against tcpdump timestamps, hop discovery against peers.

Run as root: .venv/bin/python bench/connectivity_bench.py [--probes 100] [--rounds 5]
Builds client - router - server namespaces (10.199.0.0/16), so all traffic stays inside them.
"""
from __future__ import annotations

import argparse
import json
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import dpkt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from connectivity.check import CheckSettings, run_check  # noqa: E402
from connectivity.hops import Tracer  # noqa: E402
from connectivity.request import parse_request  # noqa: E402
from devtools.pathlab import (  # noqa: E402
    CLIENT,
    HTTP_PORT,
    PYTHON,
    SERVER,
    Path3,
    three_namespaces,
)
from plumbing import proc  # noqa: E402


def capture_probes(path: Path3, probes: int, pcap: str) -> tuple[list, float]:
    """Run `probes` TCP probes in-process inside the client while tcpdump watches c0."""
    dump = path.client.popen(["tcpdump", "-i", "c0", "-n", "-U", "--immediate-mode", "-w", pcap,
                              "--time-stamp-precision=nano", f"tcp port {HTTP_PORT}"],
                             stdout=proc.subprocess.DEVNULL, stderr=proc.subprocess.PIPE)
    try:
        assert dump.stderr is not None
        dump.stderr.readline()  # "listening on c0 ...": the capture is armed
        request = parse_request({"destination": {"address": SERVER, "port": HTTP_PORT},
                                 "probes": probes})
        with path.client.enter():
            started = time.perf_counter()
            result = run_check(request, settings=CheckSettings(discover_hops=False))
            total = time.perf_counter() - started
        time.sleep(0.3)  # let tcpdump write the last packets
    finally:
        proc.kill_group(dump.pid, signal.SIGINT)
        dump.wait(10)
    assert result.probes_failed == 0, result.summary
    return list(result.probe_results), total


def wire_rtts(pcap: str) -> list[float]:
    """SYN -> SYN/ACK per client port, in SYN order, from the capture's kernel timestamps."""
    syn, rtts = {}, []
    with open(pcap, "rb") as handle:
        for ts, frame in dpkt.pcap.Reader(handle):
            ip = dpkt.ethernet.Ethernet(frame).data
            tcp = ip.data
            flags = tcp.flags & (dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK)
            # Ports are reused (probes end with RST, no TIME_WAIT): pair each SYN with the
            # next SYN/ACK to its port, then forget it.
            if flags == dpkt.tcp.TH_SYN:
                syn[tcp.sport] = float(ts)
            elif flags == dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK and tcp.dport in syn:
                sent = syn.pop(tcp.dport)
                rtts.append((sent, (float(ts) - sent) * 1000.0))
    return [rtt for _, rtt in sorted(rtts)]


def _errors(ours: list, wire: list) -> dict:
    errors = [a - b for a, b in zip(ours, wire)]
    return {"mean": round(statistics.mean(errors), 4),
            "mean_abs": round(statistics.mean(abs(e) for e in errors), 4),
            "max_abs": round(max(abs(e) for e in errors), 4)}


def timed(fn, rounds: int) -> tuple[float, object]:
    times, last = [], None
    for _ in range(rounds):
        started = time.perf_counter()
        last = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), last


def hop_discovery(path: Path3, rounds: int) -> dict:
    def ours_trace():
        with path.client.enter():
            return Tracer(CLIENT, SERVER, HTTP_PORT, 40999, False).run()

    def ours_full():
        request = parse_request({"destination": {"address": SERVER, "port": HTTP_PORT},
                                 "probes": 3})
        with path.client.enter():
            return run_check(request)

    def ours_cli():
        return path.client.run([PYTHON, "-m", "connectivity", SERVER, "--port", str(HTTP_PORT),
                                "--probes", "1", "--json"], timeout=60, check=False,
                               cwd=str(ROOT)).stdout

    def traceroute():
        return path.client.run(["traceroute", "-T", "-n", "-q", "3", "-p", str(HTTP_PORT),
                                SERVER], timeout=60).stdout

    def mtr():
        return path.client.run(["mtr", "--tcp", "-P", str(HTTP_PORT), "-n", "-r", "-c", "3",
                                SERVER], timeout=60).stdout

    figures = {}
    for name, fn in (("ours: hop discovery (3 probes/hop)", ours_trace),
                     ("ours: full answer, 3 probes + hops", ours_full),
                     ("ours: CLI process, 1 probe + hops", ours_cli),
                     ("traceroute -T -q 3", traceroute), ("mtr --tcp -r -c 3", mtr)):
        seconds, last = timed(fn, rounds)
        figures[name] = {"median_s": round(seconds, 4), "sample": _hops_of(last)}
    return figures


def _hops_of(output: object) -> str:
    if isinstance(output, str) and output.lstrip().startswith("{"):
        return " ".join(h["address"] for h in json.loads(output)["hops"])
    if isinstance(output, str):
        body = output.split("\n", 1)[-1] if output.startswith("traceroute") else output
        return " ".join(w for w in body.split() if w.startswith("10.199."))
    if hasattr(output, "hops"):
        return " ".join(h.address for h in output.hops)
    records = getattr(output, "records", {})
    reached = getattr(output, "reached_ttl", None) or 0
    return " ".join(records[t].address() for t in sorted(records) if t <= reached)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--probes", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    with three_namespaces("ccb") as path, tempfile.TemporaryDirectory() as tmp:
        pcap = str(Path(tmp) / "probes.pcap")
        probes, total = capture_probes(path, args.probes, pcap)
        wire = wire_rtts(pcap)
        assert len(wire) == len(probes), f"{len(wire)} handshakes on the wire, {len(probes)}"
        ours = [p.rtt_ms for p in probes]
        report = {
            "probes": len(ours), "total_s": round(total, 3),
            "probe_latency_ms": {"mean": round(statistics.mean(ours), 4),
                                 "min": round(min(ours), 4), "max": round(max(ours), 4)},
            "tcpdump_rtt_ms": {"mean": round(statistics.mean(wire), 4),
                               "min": round(min(wire), 4), "max": round(max(wire), 4)},
            "error_ms": _errors(ours, wire),
            "user_space_error_ms": _errors([p.wall_ms for p in probes], wire),
            "hop_discovery": hop_discovery(path, args.rounds),
        }
    (out_dir / "connectivity.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    ok = report["error_ms"]["mean_abs"] <= 0.2
    print(f"mean |error| {report['error_ms']['mean_abs']} ms: {'within' if ok else 'OVER'} 0.2 ms")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
