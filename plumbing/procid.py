"""Which process is which: a pid plus its start time in clock ticks after boot.

A pid alone is reused; a start time from psutil is wall-clock (boot time + ticks) and moves
when the clock is stepped, which NTP does on a VM's first minutes. `/proc/<pid>/stat` field 22
counts ticks since boot: fixed for the life of the process, and never shared by two processes
with the same pid.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable, Optional


@dataclass(frozen=True)
class ProcessId:
    """A process that existed: pid and start ticks; `start == 0` means unknown."""

    pid: int
    start: int


def identify(pid: int) -> Optional[ProcessId]:
    """The identity of a live (not zombie) process, or None when there is none."""
    if pid <= 0:
        return None
    fields = _stat_fields(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return None
    return ProcessId(pid, int(fields[19]))


def myself() -> ProcessId:
    me = identify(os.getpid())
    assert me is not None, "a running process can read its own /proc entry"
    return me


def is_running(process: ProcessId) -> bool:
    """True while that very process (not a later one with its pid) lives."""
    current = identify(process.pid)
    return current is not None and (process.start == 0 or current.start == process.start)


def argv(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as stream:
            raw = stream.read()
    except OSError:
        return []
    return [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]


def find_by_argv(needles: Iterable[str]) -> Optional[ProcessId]:
    """The first live process whose command line holds every needle as a whole argument."""
    wanted = list(needles)
    for entry in os.listdir("/proc"):
        if entry.isdigit() and all(n in argv(int(entry)) for n in wanted):
            found = identify(int(entry))
            if found is not None:
                return found
    return None


def _stat_fields(pid: int) -> Optional[list[str]]:
    """Fields after the command name (which may hold spaces and parentheses): [state, ...]."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stream:
            raw = stream.read().decode("ascii", "replace")
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2:].split()
    return fields if len(fields) > 19 else None
