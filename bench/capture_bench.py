"""Capture benchmark: our two backends and tcpdump on the same veth traffic at fixed rates.

Run as root: `.venv/bin/python bench/capture_bench.py` (about 1 minute). Prints a Markdown
table for README's perf-capture section and writes bench/results/capture.json.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from devtools.netns import Topology, veth  # noqa: E402
from devtools.packetsockets import wait_packet_socket  # noqa: E402

SENDER_IP, CAPTURE_IP, PORT, PAYLOAD = "10.199.9.1", "10.199.9.2", 9999, 64  # 106-byte frames
RATES = [50_000, 100_000, 200_000, 0]  # 0 = as fast as the sender can
FILTER = {"protocol": "UDP", "localPort": str(PORT)}
EXPRESSION = f"udp and ((dst port {PORT}) or (src port {PORT}))"
TICK = os.sysconf("SC_CLK_TCK")


def _cpu_now(pid: int) -> float:
    """CPU seconds used so far by every thread of `pid` (schedstat, nanosecond resolution)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as stat:
                total += int(stat.read().split()[0])
        except OSError:
            continue  # a thread that just ended
    return total / 1e9


def _rx_packets(ns, ifname: str) -> int:
    out = ns.run(["cat", f"/sys/class/net/{ifname}/statistics/rx_packets"]).stdout
    return int(out)


def _start(ns, folder: str, rate: int) -> Dict[str, dict]:
    tag = rate or "max"
    tools: Dict[str, dict] = {}
    out = os.path.join(folder, f"tcpdump-{tag}.pcap")
    proc = ns.popen(["tcpdump", "-i", "cap0", "-n", "-w", out, EXPRESSION],
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    tools["tcpdump"] = {"proc": proc, "file": out}
    for backend in ("libpcap", "rawsocket"):
        out = os.path.join(folder, f"{backend}-{tag}.cap")
        argv = [sys.executable, "-m", "capture_engine", "--netns", ns.name, "-i", "cap0", "-w",
                out, "--backend", backend, "--json", "--time-limit", "120", "--filter",
                json.dumps(FILTER)]
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True)
        tools[backend] = {"proc": proc, "file": out}
    for tool in tools.values():
        wait_packet_socket(tool["proc"], ns.name)
        tool["cpu0"] = _cpu_now(tool["proc"].pid)
    return tools


def _stop(tools: Dict[str, dict]) -> Dict[str, dict]:
    """Capture CPU is counted from ready to the end of the traffic (start-up and exit are not)."""
    results = {}
    for tool in tools.values():
        tool["cpu"] = _cpu_now(tool["proc"].pid) - tool["cpu0"]
        tool["proc"].send_signal(signal.SIGINT)
    for name, tool in tools.items():
        proc = tool["proc"]
        stdout, stderr = proc.communicate(timeout=30)
        stderr = stderr.decode(errors="replace")
        cpu = tool["cpu"]
        if name == "tcpdump":
            counts = {line.split()[-1]: int(line.split()[0]) for line in stderr.splitlines()
                      if line.split() and line.split()[0].isdigit()}
            captured, dropped = counts.get("captured", 0), counts.get("kernel", 0)
        else:
            status = json.loads(stdout)
            captured, dropped = status["packetsCaptured"], status["packetsDropped"]
        results[name] = {"captured": captured, "dropped": dropped, "cpu": round(cpu, 4)}
        os.unlink(tool["file"])
    return results


def run_rate(sender_ns, capture_ns, sender: str, folder: str, rate: int, seconds: float) -> dict:
    tools = _start(capture_ns, folder, rate)
    rx0 = _rx_packets(capture_ns, "cap0")
    done = sender_ns.run([sender, CAPTURE_IP, str(PORT), str(rate), str(seconds),
                          str(PAYLOAD)], timeout=seconds + 30)
    time.sleep(0.5)
    arrived = _rx_packets(capture_ns, "cap0") - rx0
    results = _stop(tools)
    return {"rate": rate, "sent": int(done.stdout), "arrived": arrived, "tools": results}


def _ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}x" if base else "n/a"


def table(rows: List[dict], seconds: float) -> str:
    lines = [f"| offered rate ({seconds:g} s) | arrived | tcpdump captured / drops / CPU s "
             "| libpcap backend captured / drops / CPU s (CPU vs tcpdump) "
             "| raw-socket backend captured / drops / CPU s (CPU vs tcpdump) |",
             "|---|---|---|---|---|"]
    for row in rows:
        t = row["tools"]
        cells = [f"{row['rate']:,} pps" if row["rate"] else "max", f"{row['arrived']:,}",
                 f"{t['tcpdump']['captured']:,} / {t['tcpdump']['dropped']:,} / "
                 f"{t['tcpdump']['cpu']:.2f}"]
        for name in ("libpcap", "rawsocket"):
            cells.append(f"{t[name]['captured']:,} / {t[name]['dropped']:,} / "
                         f"{t[name]['cpu']:.2f} ({_ratio(t[name]['cpu'], t['tcpdump']['cpu'])})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rates", type=int, nargs="*", default=RATES)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("capture_bench: run as root (namespaces, packet sockets)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="capbench-") as work, Topology("cpb") as topo:
        sender = os.path.join(work, "sender")
        subprocess.run(["gcc", "-O2", "-o", sender, os.path.join(HERE, "sender.c")], check=True)
        folder = os.path.join(work, "out")
        os.mkdir(folder)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3g", "tmpfs", folder], check=True)
        try:
            send_ns, cap_ns = topo.namespace("snd"), topo.namespace("cap")
            veth(send_ns, "snd0", [f"{SENDER_IP}/24"], cap_ns, "cap0", [f"{CAPTURE_IP}/24"])
            sink = cap_ns.popen([sys.executable, "-c", "import socket,time; s=socket.socket("
                                 "socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', "
                                 f"{PORT})); time.sleep(600)"])  # no ICMP port-unreachable
            rows = [run_rate(send_ns, cap_ns, sender, folder, rate, args.seconds)
                    for rate in args.rates]
            os.killpg(sink.pid, signal.SIGKILL)
            sink.wait()
        finally:
            subprocess.run(["umount", "-l", folder], check=False)
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "capture.json"), "w") as out:
        json.dump(rows, out, indent=2)
    print(table(rows, args.seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
