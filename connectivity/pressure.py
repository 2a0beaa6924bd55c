"""CPU and memory pressure on the VM during the check, as warnings (psutil)."""
from __future__ import annotations

import psutil

from connectivity.model import Issue, context

CPU_WARN_PERCENT = 90.0
MEMORY_WARN_PERCENT = 90.0


class PressureSampler:
    """System CPU busy time over the whole check, minus this process's own share."""

    def __init__(self) -> None:
        self._me = psutil.Process()
        self._system = psutil.cpu_times()
        self._own = self._me.cpu_times()

    def cpu_percent(self) -> float:
        system, own = psutil.cpu_times(), self._me.cpu_times()
        total = sum(system) - sum(self._system)
        idle = (system.idle + getattr(system, "iowait", 0.0)) - (
            self._system.idle + getattr(self._system, "iowait", 0.0))
        mine = (own.user + own.system) - (self._own.user + self._own.system)
        # Of the CPU time this check did not use itself, the share others kept busy.
        spare = total - mine
        return max(0.0, 100.0 * (total - idle - mine) / spare) if spare > 0 else 0.0

    def issues(self) -> list[Issue]:
        cpu = self.cpu_percent()
        memory = psutil.virtual_memory()
        found = []
        if cpu >= CPU_WARN_PERCENT:
            found.append(Issue("CPU", "Warning", "Local", context(
                cpuPercent=f"{cpu:.0f}", threshold=f"{CPU_WARN_PERCENT:.0f}",
                topProcess=_top_process(self._me.pid),
                detail=f"CPU {cpu:.0f}% busy (other processes) during the check: "
                       "latency figures may be inflated")))
        if memory.percent >= MEMORY_WARN_PERCENT:
            found.append(Issue("Memory", "Warning", "Local", context(
                memoryPercent=f"{memory.percent:.0f}",
                availableMiB=str(memory.available // (1024 * 1024)),
                detail=f"memory {memory.percent:.0f}% used")))
        return found


def _top_process(own_pid: int) -> str:
    """The process with the most CPU time so far, other than this one."""
    best = None
    for process in psutil.process_iter(["pid", "name", "cpu_times"]):
        times = process.info.get("cpu_times")
        if process.info.get("pid") == own_pid or times is None:
            continue
        used = times.user + times.system
        if best is None or used > best[0]:
            best = (used, process.info["pid"], process.info.get("name"))
    return f"{best[2]} (pid {best[1]})" if best else ""
