"""One installed extension per kind, driven through the fake agent case after case."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

from devtools.fabric import TenantCertificate
from devtools.fakeagent import CommandRun, FakeAgent
from devtools.netns import Namespace
from plumbing.netns import in_netns

VERSION = "1.0.0"


@dataclass
class Lane:
    """An extension installed once; each case is the next sequence number's settings."""

    agent: FakeAgent
    ext_dir: Path
    netns: Optional[str] = None  # the agent's commands run inside it (the VM's network)
    seq: int = 0

    def enable(self, public: Mapping[str, Any],
               protected: Optional[Mapping[str, Any]] = None) -> Tuple[int, CommandRun]:
        self.seq += 1
        self.agent.write_settings(self.ext_dir, self.seq, public, protected)
        with in_netns(self.netns):  # the handler and its detached worker inherit it
            run = self.agent.run(self.ext_dir, "enable", self.seq)
        return self.seq, run

    def status(self, seq: int) -> Dict[str, Any]:
        status = self.agent.status(self.ext_dir, seq)
        assert status is not None, f"no status file for sequence {seq}"
        return status

    def wait_terminal(self, seq: int, timeout: float = 90.0) -> Dict[str, Any]:
        return self.agent.wait_terminal(self.ext_dir, seq, timeout=timeout, interval=0.1)

    def substatus(self, seq: int, name: str) -> Dict[str, Any]:
        for sub in self.status(seq).get("substatus") or []:
            if sub["name"] == name:
                querystatus: Dict[str, Any] = json.loads(sub["formattedMessage"]["message"])
                return querystatus
        return {}

    def wait_capture(self, seq: int, name: str, states: Tuple[str, ...],
                     timeout: float = 60.0, need: Tuple[str, ...] = ()) -> Dict[str, Any]:
        """Poll the capture's substatus (querystatus) until it is in one of `states` with
        every key of `need` set (a stopped session says `uploadedUrl` once uploaded)."""
        deadline = time.monotonic() + timeout
        found: Dict[str, Any] = {}
        while time.monotonic() < deadline:
            found = self.substatus(seq, name) if self.agent.status(self.ext_dir, seq) else {}
            if found.get("packetCaptureStatus") in states and all(found.get(k) for k in need):
                return found
            time.sleep(0.1)
        raise AssertionError(f"capture {name} (sequence {seq}) never reached {states}: {found}")

    def wait_worker(self, seq: int, name: str, timeout: float = 60.0) -> None:
        """Wait until the worker of sequence `seq` named `name` has ended (its job record on
        disk says so): its files are closed and uploaded, its last status written."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for path in (self.ext_dir / "state" / "jobs").glob("*.json"):
                try:
                    job = json.loads(path.read_text())
                except (OSError, ValueError):
                    continue  # being replaced: read it on the next round
                if (job.get("seq"), job.get("name")) == (seq, name) and \
                        job.get("state") in ("finished", "died"):
                    return
            time.sleep(0.1)
        raise AssertionError(f"the worker of {name} (sequence {seq}) still runs after {timeout}s")


@dataclass
class CaptureLab:
    """The capture lane, the peer namespace that sends traffic, the capture root."""

    lane: Lane
    peer: Namespace
    root: Path


@dataclass
class SnapshotLab:
    """The snapshot lane and the loop mount it freezes."""

    lane: Lane
    mount: str


def install_lane(folder: Path, certificate: TenantCertificate, zip_path: Path,
                 env: Mapping[str, str], netns: Optional[str] = None) -> Lane:
    """A LibDir holding the tenant certificate, the zip unpacked and `install` run."""
    lib_dir = folder / "waagent"
    lib_dir.mkdir(parents=True)
    for source in (certificate.crt, certificate.prv):
        (lib_dir / source.name).write_bytes(source.read_bytes())
    agent = FakeAgent(lib_dir=lib_dir, log_root=folder / "log", certificate=TenantCertificate(
        certificate.thumbprint, lib_dir / certificate.crt.name, lib_dir / certificate.prv.name),
        extra_env=dict(env))
    ext_dir = agent.fresh_install(zip_path, VERSION)
    installed = agent.run(ext_dir, "install")
    assert installed.returncode == 0, f"install failed: {installed.output}"
    return Lane(agent, ext_dir, netns)
