"""The thaw watchdog process: thaws every frozen mount at the deadline, on worker death or signal.

Started before the first FIFREEZE with its own fds on every mount point; every import happens
before it reports ready, so nothing it does later touches a frozen filesystem.
"""
from __future__ import annotations

import fcntl
import json
import os
import select
import signal
import sys
import time

FIFREEZE = 0xC0045877
FITHAW = 0xC0045878


def thaw_all(fds: list[int]) -> list[int]:
    """FITHAW every fd, last frozen first; returns the fds that were actually frozen."""
    thawed = []
    for fd in reversed(fds):
        try:
            fcntl.ioctl(fd, FITHAW, 0)
            thawed.append(fd)
        except OSError:
            pass  # EINVAL: not frozen (already thawed by the worker)
    return thawed


class _Signalled(Exception):
    pass


def _on_signal(signum: int, _frame: object) -> None:
    raise _Signalled(signum)


def _write_report(path: str | None, reason: str, mounts: list[str]) -> None:
    if not path:
        return
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as stream:
        json.dump({"reason": reason, "thawed": mounts, "time": time.time()}, stream)
    os.replace(tmp, path)


def _wait(deadline: float, claimed: set[int]) -> str:
    """'done', 'died' (EOF on stdin) or 'timeout'; tracks which mounts the worker froze."""
    stdin = sys.stdin.buffer.raw if hasattr(sys.stdin.buffer, "raw") else sys.stdin.buffer
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return "timeout"
        ready, _, _ = select.select([stdin], [], [], left)
        if ready:
            data = os.read(stdin.fileno(), 4096)
            if not data:
                return "died"
            for line in data.decode().splitlines():
                parts = line.split()
                if parts and parts[0] == "done":
                    return "done"
                if len(parts) == 2 and parts[0] in ("freeze", "skip"):
                    (claimed.add if parts[0] == "freeze" else claimed.discard)(int(parts[1]))


def main() -> int:
    setup = json.loads(sys.stdin.buffer.readline())
    mounts: list[str] = setup["mounts"]
    fds = [os.open(m, os.O_RDONLY | os.O_DIRECTORY) for m in mounts]
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, _on_signal)
    deadline = time.monotonic() + float(setup["timeout"])
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    claimed: set[int] = set()
    try:
        reason = _wait(deadline, claimed)
    except _Signalled as sig:
        reason = f"signal {sig.args[0]}"
    # The worker thaws what it froze before saying done; otherwise thaw what it claimed.
    ours = [] if reason == "done" else [fd for i, fd in enumerate(fds) if i in claimed]
    thawed = thaw_all(ours)
    names = [mounts[fds.index(fd)] for fd in thawed]
    try:
        sys.stdout.write(f"{reason} thawed={len(names)}\n")
        sys.stdout.flush()
    except OSError:
        pass  # the worker is gone
    if reason != "done":
        _write_report(setup.get("report"), reason, names)
        if reason == "timeout":
            _linger(fds, claimed)
    return 0


def _linger(fds: list[int]) -> None:
    """After a forced thaw, keep thawing (a late FIFREEZE may follow) until done or death."""
    try:
        while _wait(time.monotonic() + 0.1) == "timeout":
            thaw_all(fds)
    except _Signalled:
        pass
    thaw_all(fds)


if __name__ == "__main__":
    sys.exit(main())
