"""Named crash points: steps where a test can make this process die by SIGKILL, and a trace of
the steps a run reached, so a crash sweep enumerates the steps from the code itself.

Inert unless the environment arms it (the agent passes its environment through to every
process we start, so enable, its worker and the watchdog all see the same variables):
- `HANDLER_CRASH_TRACE=FILE` appends `<pid> <name>` to FILE each time a point is reached;
- `HANDLER_CRASH_AT=NAME` SIGKILLs the process that first reaches NAME;
  `HANDLER_CRASH_AT=NAME@N` the one that reaches it for the N-th time (counted in the trace,
  so it needs the trace too).
Never place a point where reaching it must not touch a filesystem that may be frozen: the trace
file is the test's own, never under a frozen mount.
"""
from __future__ import annotations

import os
import signal
from typing import Optional

ARM_VARIABLE = "HANDLER_CRASH_AT"
TRACE_VARIABLE = "HANDLER_CRASH_TRACE"


def crashpoint(name: str) -> None:
    """Record reaching `name`; die here (SIGKILL, no cleanup) when the test armed it."""
    trace = os.environ.get(TRACE_VARIABLE)
    armed = os.environ.get(ARM_VARIABLE)
    if not trace and not armed:
        return
    if trace:
        _append(trace, f"{os.getpid()} {name}\n")
    if armed and _matches(armed, name, trace):
        os.kill(os.getpid(), signal.SIGKILL)


def read_trace(path: str) -> list[tuple[int, str]]:
    """(pid, name) for every point reached, in order."""
    try:
        with open(path, encoding="utf-8") as stream:
            lines = stream.read().splitlines()
    except FileNotFoundError:
        return []
    entries = []
    for line in lines:
        pid, _, name = line.partition(" ")
        if pid.isdigit() and name:
            entries.append((int(pid), name))
    return entries


def _matches(armed: str, name: str, trace: Optional[str]) -> bool:
    target, _, nth = armed.partition("@")
    if target != name:
        return False
    if not nth:
        return True
    if not trace or not nth.isdigit():
        return False
    return sum(1 for _, reached in read_trace(trace) if reached == name) == int(nth)


def _append(path: str, line: str) -> None:
    # One write(2) with O_APPEND: lines from concurrent processes never interleave.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode("utf-8"))
    finally:
        os.close(fd)
