"""How many AF_PACKET sockets a process holds in a namespace: a capture (ours or tcpdump) is
ready once its socket exists (tests, benchmarks)."""
from __future__ import annotations

import os
import subprocess
import time
from typing import Optional

from capture_engine.interfaces import in_netns


def packet_sockets(pid: int, netns: Optional[str] = None) -> int:
    """How many AF_PACKET sockets of network namespace `netns` process `pid` holds."""
    try:
        with in_netns(netns), open("/proc/thread-self/net/packet") as table:
            inodes = {line.split()[-1] for line in table.readlines()[1:]}
        links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
    except OSError:
        return 0
    return sum(1 for link in links if link.startswith("socket:[") and link[8:-1] in inodes)


def wait_packet_socket(proc: subprocess.Popen, netns: Optional[str] = None, count: int = 1,
                       timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"{proc.args} exited early with {proc.returncode}: " \
            f"{proc.stderr.read().decode() if proc.stderr else ''}"
        if packet_sockets(proc.pid, netns) >= count:
            time.sleep(0.2)  # the filter and ring are set before the socket is bound
            return
        time.sleep(0.05)
    raise AssertionError(f"{proc.args} opened no packet socket in {timeout}s")
