"""Hang a FIFREEZE on purpose and watch the outcome (root only): a write-bandwidth throttle on a
loop device, dirty data for FIFREEZE to flush through it, a check that a FIFREEZE is blocked in
the kernel, and bounded probes of whether a filesystem is writable or frozen.

FIFREEZE syncs the filesystem holding its superblock lock; with ~40 MB dirty and writes to the
device limited to 4 KiB/s the sync, and so the FIFREEZE, blocks until the throttle is lifted. A
FITHAW (or syncfs) of the same filesystem waits for that lock meanwhile.
"""
from __future__ import annotations

import fcntl
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import List, Sequence

from snapshot.cgroupescape import hierarchies

FIFREEZE = 0xC0045877
FITHAW = 0xC0045878
SLOW_BPS = 4096
_IOCTL_NR = {"x86_64": 16, "aarch64": 29}
_probes: List[subprocess.Popen] = []  # probes stuck on a frozen filesystem; reaped at exit


class WriteThrottle:
    """Limits writes to `device` to `bps` bytes/s in the root blkio cgroup until lift()."""

    def __init__(self, device: str, bps: int = SLOW_BPS) -> None:
        rdev = os.stat(device).st_rdev
        self.key = f"{os.major(rdev)}:{os.minor(rdev)}"
        blkio = [h for h in hierarchies() if h.version == 1 and "blkio" in h.controllers]
        if not blkio:
            raise RuntimeError("no cgroup v1 blkio hierarchy mounted")
        self.path = Path(blkio[0].mountpoint) / "blkio.throttle.write_bps_device"
        self.path.write_text(f"{self.key} {bps}\n")
        self.active = True

    def lift(self) -> None:
        """Idempotent: writes flow at full speed again."""
        if self.active:
            self.path.write_text(f"{self.key} 0\n")
            self.active = False

    def __enter__(self) -> WriteThrottle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.lift()


def dirty(mountpoint: str, megabytes: int = 40) -> None:
    """Leave `megabytes` of dirty page cache (buffered writes, no fsync) on the filesystem."""
    block = os.urandom(1 << 20)
    with open(os.path.join(mountpoint, "dirty.bin"), "wb") as stream:
        for _ in range(megabytes):
            stream.write(block)


def fifreeze_in_flight(pid: int, mountpoint: str = "") -> bool:
    """True while a thread of `pid` is inside an ioctl(FIFREEZE) of `mountpoint` (any mount
    when not given)."""
    number = str(_IOCTL_NR.get(platform.machine(), 16))
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return False
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/syscall", encoding="ascii") as stream:
                fields = stream.read().split()
            if len(fields) > 2 and fields[0] == number and int(fields[2], 16) == FIFREEZE \
                    and (not mountpoint or os.readlink(
                        f"/proc/{pid}/fd/{int(fields[1], 16)}") == mountpoint):
                return True
        except OSError:
            continue
    return False


def unwritable(mountpoints: Sequence[str], timeout: float) -> List[str]:
    """One writer per filesystem, all started at once, each creating a file: the mountpoints
    whose writer did not finish within `timeout` seconds (still frozen, or frozen again)."""
    probes = [subprocess.Popen(["sh", "-c", 'echo probe > "$1"', "probe",
                                os.path.join(m, f"probe.{os.getpid()}")],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL) for m in mountpoints]
    deadline = time.monotonic() + timeout
    stuck = []
    for mountpoint, probe in zip(mountpoints, probes):
        try:
            if probe.wait(max(0.0, deadline - time.monotonic())) != 0:
                stuck.append(mountpoint)
        except subprocess.TimeoutExpired:
            probe.kill()  # blocked in the kernel on a frozen filesystem: dies once thawed
            _probes.append(probe)
            stuck.append(mountpoint)
    return stuck


def freeze(mountpoint: str) -> None:
    """FIFREEZE from outside (someone else's freeze, as far as the product is concerned)."""
    _ioctl(mountpoint, FIFREEZE)


def thaw_if_frozen(mountpoint: str) -> bool:
    """FITHAW; True if the filesystem was frozen (so nobody had thawed it), False if not."""
    try:
        _ioctl(mountpoint, FITHAW)
    except OSError:
        return False
    return True


def _ioctl(mountpoint: str, request: int) -> None:
    fd = os.open(mountpoint, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.ioctl(fd, request, 0)
    finally:
        os.close(fd)
