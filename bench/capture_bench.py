"""Capture benchmark: our two backends and tcpdump on the same veth traffic at fixed rates,
then the same again with each tool in its own cgroup under a CPU quota of 10 % of one core.

Run as root: `.venv/bin/python bench/capture_bench.py` (about 1 minute; `--no-quota` skips the
quota runs). Prints Markdown tables for docs/performance.md and writes
bench/results/capture.json.
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
from pathlib import Path
from typing import Callable, Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from devtools.cgroups import TestCgroup  # noqa: E402
from devtools.netns import Topology, unique_name, veth  # noqa: E402
from devtools.packetsockets import wait_packet_socket  # noqa: E402
from devtools.zipbuild import build_zip, install_zip  # noqa: E402

SENDER_IP, CAPTURE_IP, PORT, PAYLOAD = "10.199.9.1", "10.199.9.2", 9999, 64  # 106-byte frames
RATES = [50_000, 100_000, 200_000, 0]  # 0 = as fast as the sender can
FILTER = {"protocol": "UDP", "localPort": str(PORT)}
EXPRESSION = f"udp and ((dst port {PORT}) or (src port {PORT}))"
TICK = os.sysconf("SC_CLK_TCK")
# What an agent-imposed limit looks like: cpu.max "10000 100000" (10 ms of CPU every 100 ms).
QUOTA_US, PERIOD_US = 10_000, 100_000
QUOTA_RATES = [50_000, 200_000, 0]
TOOLS = ("tcpdump", "libpcap", "bundled", "rawsocket")
# Our tools: (--backend, CAPTURE_LIBPCAP, run from the installed zip), and their column titles.
OURS = {"libpcap": ("libpcap", "system", False), "bundled": ("libpcap", "bundled", True),
        "rawsocket": ("rawsocket", "system", False)}
TITLES = {"libpcap": "libpcap backend, system libpcap",
          "bundled": "libpcap backend, the zip's bundled libpcap",
          "rawsocket": "raw-socket backend"}


class CpuQuota:
    """One tool's cgroup under a CFS bandwidth limit: cgroup v2 `cpu.max` where the cpu
    controller is on v2, else v1 `cpu.cfs_quota_us`/`cpu.cfs_period_us` (the same kernel
    mechanism, what the guest agent writes on a v1 host)."""

    def __init__(self, name: str) -> None:
        try:
            self.group = TestCgroup(name, ("cpu",))
        except RuntimeError:  # no v1 cpu hierarchy: a pure cgroup v2 host
            self.group = TestCgroup(name, ())
        try:
            v2 = self.group.v2
            if v2 is not None and (v2 / "cpu.max").exists():
                (v2 / "cpu.max").write_text(f"{QUOTA_US} {PERIOD_US}")
                self.mechanism, self.stat = "cgroup v2 cpu.max", v2 / "cpu.stat"
            elif self.group.paths:
                v1 = self.group.paths[0]
                (v1 / "cpu.cfs_period_us").write_text(str(PERIOD_US))
                (v1 / "cpu.cfs_quota_us").write_text(str(QUOTA_US))
                self.mechanism, self.stat = "cgroup v1 cpu.cfs_quota_us", v1 / "cpu.stat"
            else:
                raise RuntimeError("no cgroup with the cpu controller (v1 or v2)")
        except BaseException:
            self.group.remove()
            raise

    def throttled(self) -> int:
        """How many 100 ms periods the group ran out of quota."""
        for line in self.stat.read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "nr_throttled":
                return int(value)
        return 0

    def remove(self) -> None:
        self.group.remove()


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


def _settle(pid: int, timeout: float = 20.0) -> None:
    """Until `pid` is idle (under 2 ms of CPU in 250 ms): the rest of its start-up after the
    packet socket exists is not counted as capture, and under a quota it would be lost."""
    deadline = time.monotonic() + timeout
    before = _cpu_now(pid)
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = _cpu_now(pid)
        if now - before < 0.002:
            return
        before = now


def _rx_packets(ns, ifname: str) -> int:
    out = ns.run(["cat", f"/sys/class/net/{ifname}/statistics/rx_packets"]).stdout
    return int(out)


def _start(ns, folder: str, rate: int, ext_dir: str,
           quotas: Optional[Dict[str, CpuQuota]] = None) -> Dict[str, dict]:
    """The tools, each in its own quota cgroup when `quotas` are given (a child is moved
    there before it execs, so its start-up runs under the quota too); `bundled` runs the
    installed zip's code in `ext_dir` with the libpcap it carries."""
    tag = f"{rate or 'max'}{'-quota' if quotas else ''}"
    tools: Dict[str, dict] = {}

    def joiner(name: str) -> Optional[Callable[[], None]]:
        return quotas[name].group.join_self if quotas else None

    out = os.path.join(folder, f"tcpdump-{tag}.pcap")
    proc = ns.popen(["tcpdump", "-i", "cap0", "-n", "-w", out, EXPRESSION],
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                    preexec_fn=joiner("tcpdump"))
    tools["tcpdump"] = {"proc": proc, "file": out}
    for name, (backend, library, from_zip) in OURS.items():
        out = os.path.join(folder, f"{name}-{tag}.cap")
        argv = [sys.executable, "-m", "capture_engine", "--netns", ns.name, "-i", "cap0", "-w",
                out, "--backend", backend, "--json", "--time-limit", "120", "--filter",
                json.dumps(FILTER)]
        env = dict(os.environ, CAPTURE_LIBPCAP=library)
        if from_zip:
            env["PYTHONPATH"] = ext_dir
        proc = subprocess.Popen(argv, cwd=ext_dir if from_zip else ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True, preexec_fn=joiner(name))
        tools[name] = {"proc": proc, "file": out}
    for name, tool in tools.items():
        wait_packet_socket(tool["proc"], ns.name, timeout=60)  # start-up at 10 % of a core
        _settle(tool["proc"].pid)
        tool["cpu0"] = _cpu_now(tool["proc"].pid)
        tool["throttled0"] = quotas[name].throttled() if quotas else 0
    return tools


def _stop(tools: Dict[str, dict],
          quotas: Optional[Dict[str, CpuQuota]] = None) -> Dict[str, dict]:
    """Capture CPU is counted from ready to the end of the traffic (start-up and exit are not)."""
    results = {}
    for name, tool in tools.items():
        tool["cpu"] = _cpu_now(tool["proc"].pid) - tool["cpu0"]
        tool["throttled"] = (quotas[name].throttled() if quotas else 0) - tool["throttled0"]
        tool["proc"].send_signal(signal.SIGINT)
    for name, tool in tools.items():
        proc = tool["proc"]
        stdout, stderr = proc.communicate(timeout=120)  # a throttled backlog to write
        stderr = stderr.decode(errors="replace")
        cpu = tool["cpu"]
        if name == "tcpdump":
            counts = {line.split()[-1]: int(line.split()[0]) for line in stderr.splitlines()
                      if line.split() and line.split()[0].isdigit()}
            captured, dropped = counts.get("captured", 0), counts.get("kernel", 0)
        else:
            status = json.loads(stdout)
            captured, dropped = status["packetsCaptured"], status["packetsDropped"]
        results[name] = {"captured": captured, "dropped": dropped, "cpu": round(cpu, 4),
                         "throttled": tool["throttled"]}
        os.unlink(tool["file"])
    return results


def run_rate(sender_ns, capture_ns, sender: str, folder: str, rate: int, seconds: float,
             ext_dir: str, quota: bool = False) -> dict:
    quotas: Dict[str, CpuQuota] = {}
    try:
        if quota:
            for name in TOOLS:
                quotas[name] = CpuQuota(unique_name(f"cpb{name[:3]}"))
        tools = _start(capture_ns, folder, rate, ext_dir, quotas or None)
        rx0 = _rx_packets(capture_ns, "cap0")
        done = sender_ns.run([sender, CAPTURE_IP, str(PORT), str(rate), str(seconds),
                              str(PAYLOAD)], timeout=seconds + 30)
        time.sleep(1.5)  # > tcpdump's 1 s ring block timeout: its last block is handed over
        arrived = _rx_packets(capture_ns, "cap0") - rx0
        results = _stop(tools, quotas or None)
    finally:
        for group in quotas.values():
            group.remove()
    row = {"rate": rate, "sent": int(done.stdout), "arrived": arrived, "tools": results}
    if quota:
        row["quota"] = {"cpu_us": QUOTA_US, "period_us": PERIOD_US,
                        "mechanism": next(iter(quotas.values())).mechanism}
    return row


def _ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}x" if base else "n/a"


def table(rows: List[dict], seconds: float) -> str:
    heads = "".join(f" | {TITLES[name]}: captured / drops / CPU s (CPU vs tcpdump)"
                    for name in OURS)
    lines = [f"| offered rate ({seconds:g} s) | arrived | tcpdump captured / drops / CPU s"
             f"{heads} |", "|---|---|---|" + "---|" * len(OURS)]
    for row in rows:
        t = row["tools"]
        cells = [f"{row['rate']:,} pps" if row["rate"] else "max", f"{row['arrived']:,}",
                 f"{t['tcpdump']['captured']:,} / {t['tcpdump']['dropped']:,} / "
                 f"{t['tcpdump']['cpu']:.2f}"]
        for name in OURS:
            cells.append(f"{t[name]['captured']:,} / {t[name]['dropped']:,} / "
                         f"{t[name]['cpu']:.2f} ({_ratio(t[name]['cpu'], t['tcpdump']['cpu'])})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def quota_table(rows: List[dict], seconds: float) -> str:
    """Packets each tool kept of the same traffic, each at 10 % of one core: lost counts
    the datagrams sent that it did not keep; CPU is also shown as a share of its quota."""
    mechanism = rows[0]["quota"]["mechanism"] if rows else ""
    budget = seconds * QUOTA_US / PERIOD_US
    lines = [f"| offered rate ({seconds:g} s; {mechanism} {QUOTA_US} / {PERIOD_US} µs) "
             "| sent | tcpdump captured (lost) / CPU s (of quota) / throttled periods "
             + "".join(f"| {TITLES[name]}: the same " for name in OURS) + "|",
             "|---|---|---|" + "---|" * len(OURS)]
    for row in rows:
        cells = [f"{row['rate']:,} pps" if row["rate"] else "max", f"{row['sent']:,}"]
        for name in TOOLS:
            t = row["tools"][name]
            lost = max(row["sent"] - t["captured"], 0)
            cells.append(f"{t['captured']:,} ({lost:,}) / {t['cpu']:.2f} "
                         f"({t['cpu'] / budget:.0%}) / {t['throttled']}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rates", type=int, nargs="*", default=RATES)
    parser.add_argument("--quota-rates", type=int, nargs="*", default=QUOTA_RATES,
                        help="rates run again with each tool at 10 %% of one core")
    parser.add_argument("--no-quota", action="store_true", help="skip the CPU-quota runs")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("capture_bench: run as root (namespaces, packet sockets)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="capbench-") as work, Topology("cpb") as topo:
        ext_dir = str(install_zip(build_zip(), Path(work) / "waagent"))
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
            rows = [run_rate(send_ns, cap_ns, sender, folder, rate, args.seconds, ext_dir)
                    for rate in args.rates]
            quota_rows = [] if args.no_quota else [
                run_rate(send_ns, cap_ns, sender, folder, rate, args.seconds, ext_dir,
                         quota=True) for rate in args.quota_rates]
            os.killpg(sink.pid, signal.SIGKILL)
            sink.wait()
        finally:
            subprocess.run(["umount", "-l", folder], check=False)
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "capture.json"), "w") as out:
        json.dump({"unlimited": rows, "quota": quota_rows}, out, indent=2)
    print(table(rows, args.seconds))
    if quota_rows:
        print()
        print(quota_table(quota_rows, args.seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
