"""Choose the filesystems to freeze: local, writable, FIFREEZE-capable, deduplicated, `/` last."""
from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Optional

import psutil

from snapshot.errors import Code, FreezeError

FREEZABLE = ("ext3", "ext4", "xfs", "btrfs")


@dataclass(frozen=True)
class Mount:
    """One mounted filesystem as the kernel reports it."""

    device: str
    mountpoint: str
    fstype: str
    opts: tuple[str, ...]


def current_mounts() -> list[Mount]:
    return [Mount(p.device, os.path.normpath(p.mountpoint), p.fstype, tuple(p.opts.split(",")))
            for p in psutil.disk_partitions(all=True)]


def select_mounts(mounts: Sequence[Mount], skip: Iterable[str] = (),
                  only: Optional[Iterable[str]] = None) -> tuple[list[Mount], list[str]]:
    """(mounts to freeze in freeze order, reasons for what was skipped).

    With `only` (MountsToFreeze) exactly those mounts are frozen and each must be freezable;
    otherwise every eligible local mount is, loop-backed ones excepted.
    """
    skip_set = {os.path.normpath(s) for s in skip}
    wanted = None if only is None else [os.path.normpath(m) for m in only]
    chosen: list[Mount] = []
    devices = set()
    notes: list[str] = []
    for mount in mounts:
        reason = _ineligible(mount, skip_set, wanted)
        if reason is None and mount.device in devices:
            reason = "duplicate of an already chosen block device"
        if reason:
            notes.append(f"{mount.mountpoint} ({mount.fstype}): {reason}")
            continue
        devices.add(mount.device)
        chosen.append(mount)
    if wanted is not None:
        missing = sorted(set(wanted) - {m.mountpoint for m in chosen})
        if missing:
            raise FreezeError("MountsToFreeze names mounts that are not freezable local "
                              "filesystems: " + ", ".join(missing), Code.CANNOT_OPEN_MOUNT)
    chosen.sort(key=lambda m: (m.mountpoint == "/", m.mountpoint))
    return chosen, notes


def _ineligible(mount: Mount, skip: set[str], wanted: Optional[list[str]]) -> Optional[str]:
    if wanted is not None and mount.mountpoint not in wanted:
        return "not in MountsToFreeze"
    if mount.mountpoint in skip:
        return "in MountsToSkip"
    if mount.fstype not in FREEZABLE:
        return "filesystem type does not support freeze"
    if "ro" in mount.opts:
        return "read-only"
    if not mount.device.startswith("/dev/"):
        return "not a local block device"
    if wanted is None and os.path.basename(mount.device).startswith("loop"):
        return "loop-backed"
    return None
