"""A throwaway cgroup for tests: a child in chosen v1 hierarchies and in the cgroup2 root, killed
as a whole the way the guest agent kills an extension's cgroup (root only)."""
from __future__ import annotations

import os
import shlex
import signal
import time
from pathlib import Path
from typing import List, Sequence, Set

from snapshot.cgroupescape import hierarchies


class TestCgroup:
    """`<hierarchy>/<name>` in each v1 hierarchy holding one of `controllers`, and in cgroup2."""

    __test__ = False  # not a pytest test class

    def __init__(self, name: str, controllers: Sequence[str] = ("cpu", "pids")) -> None:
        found = hierarchies()
        self.paths: List[Path] = []
        for controller in controllers:
            mounts = [h for h in found if h.version == 1 and controller in h.controllers]
            if not mounts:
                raise RuntimeError(f"no cgroup v1 hierarchy with the {controller} controller")
            self.paths.append(Path(mounts[0].mountpoint) / name)
        unified = [h for h in found if h.version == 2]
        self.v2 = Path(unified[0].mountpoint) / name if unified else None
        for path in self.all_paths():
            path.mkdir()

    def all_paths(self) -> List[Path]:
        return self.paths + ([self.v2] if self.v2 is not None else [])

    def join_command(self, command: str) -> str:
        """`command` for `sh -c`, run by a shell that first moves itself into this cgroup."""
        joins = " && ".join(f"echo $$ > {shlex.quote(str(p / 'cgroup.procs'))}"
                            for p in self.all_paths())
        return f"{joins} && {command}"

    def join_self(self) -> None:
        """Move the calling process into this cgroup (e.g. as a Popen preexec_fn)."""
        for path in self.all_paths():
            with open(path / "cgroup.procs", "w", encoding="ascii") as stream:
                stream.write(f"{os.getpid()}\n")

    def procs(self) -> Set[int]:
        pids: Set[int] = set()
        for path in self.all_paths():
            try:
                text = (path / "cgroup.procs").read_text()
            except FileNotFoundError:
                continue
            pids.update(int(p) for p in text.split())
        return pids

    def kill(self, timeout: float = 10.0) -> None:
        """SIGKILL every process at once (cgroup.kill on v2), then each pid of the v1 groups
        until none is left."""
        if self.v2 is not None and (self.v2 / "cgroup.kill").exists():
            (self.v2 / "cgroup.kill").write_text("1")
        deadline = time.monotonic() + timeout
        while self.procs() and time.monotonic() < deadline:
            for pid in self.procs():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.02)
        left = self.procs()
        if left:
            raise RuntimeError(f"processes {sorted(left)} survived the kill of the cgroup")

    def remove(self) -> None:
        """Kill what is left and delete the cgroup directories (rmdir retried while exiting)."""
        self.kill()
        for path in self.all_paths():
            for _ in range(100):
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)
