"""Leave the extension's cgroups: move a process into the root cgroup of every mounted hierarchy.

Why: the guest agent runs an extension inside its own cgroup and can kill every process of that
cgroup at once (disable, uninstall, resource enforcement). A thaw watchdog left in there dies
together with the worker, and a frozen filesystem then stays frozen. The watchdog therefore
moves itself out, to the root cgroup of every hierarchy, before it says `ready` (that is, before
the first FIFREEZE); a kill of the extension's cgroup no longer reaches it, and it thaws when it
sees the worker die.

How: every `cgroup` (v1: one hierarchy per controller set, and named ones such as
name=systemd) and `cgroup2` mount listed in /proc/self/mountinfo, one mount per hierarchy (the
one closest to the hierarchy's root), gets the pid written to its `cgroup.procs`. No systemd is
needed (`systemd-run --scope` would need systemd as PID 1). Inside a cgroup namespace the
namespace's root is as far as anyone can go.

A hierarchy where the move fails comes back as a note: the caller logs it and freezes anyway.
The watchdog still thaws at its deadline, on the worker's death and on signals; only a kill of
the whole cgroup is then uncovered. Refusing to freeze would instead fail every backup on a VM
whose cgroup filesystem we cannot write.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

MOUNTINFO = "/proc/self/mountinfo"
_NOT_CONTROLLERS = ("rw", "ro", "relatime", "noprefix", "clone_children", "xattr")


@dataclass(frozen=True)
class Hierarchy:
    """One mounted cgroup hierarchy: where it is mounted, v1 or v2, its controllers (v1)."""

    mountpoint: str
    version: int
    controllers: frozenset[str]
    root: str  # the cgroup of the hierarchy this mount shows as its top ("/" = the real root)


def hierarchies(mountinfo: Optional[str] = None) -> list[Hierarchy]:
    """Mounted cgroup hierarchies, one per hierarchy (its mount nearest the hierarchy's root)."""
    if mountinfo is None:
        with open(MOUNTINFO, encoding="utf-8") as stream:
            mountinfo = stream.read()
    best: dict[str, Hierarchy] = {}
    for line in mountinfo.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        dash = fields.index("-")
        if len(fields) < dash + 4 or fields[dash + 1] not in ("cgroup", "cgroup2"):
            continue
        options = fields[dash + 3].split(",")
        found = Hierarchy(_unescape(fields[4]), 2 if fields[dash + 1] == "cgroup2" else 1,
                          frozenset(o for o in options if o not in _NOT_CONTROLLERS
                                    and not o.startswith("release_agent=")),
                          _unescape(fields[3]))
        device = fields[2]  # one superblock per hierarchy: its mounts share major:minor
        if device not in best or len(found.root) < len(best[device].root):
            best[device] = found
    return list(best.values())


def move_to_roots(pid: int = 0, mountinfo: Optional[str] = None) -> list[str]:
    """Move `pid` (default: this process) to the top of every hierarchy; returns the failures."""
    pid = pid or os.getpid()
    try:
        found = hierarchies(mountinfo)
    except OSError as exc:
        return [f"cannot read {MOUNTINFO}: {exc.strerror}"]
    notes = []
    for hierarchy in found:
        procs = os.path.join(hierarchy.mountpoint, "cgroup.procs")
        try:
            with open(procs, "w", encoding="ascii") as stream:
                stream.write(f"{pid}\n")
        except OSError as exc:
            notes.append(f"cannot leave the cgroup in {hierarchy.mountpoint}: {exc.strerror}")
    return notes


def _unescape(path: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes (\\040 ...)."""
    for code in ("\\040", "\\011", "\\012", "\\134"):
        path = path.replace(code, chr(int(code[1:], 8)))
    return path
