"""The crash sweep's machinery: enumerate the crash points a run reaches, then replay the run
once per point with that point armed (SIGKILL there), do what the agent does next, and let the
scenario check its promises."""
from __future__ import annotations

import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from devtools.fabric import TenantCertificate
from devtools.fakeagent import FakeAgent
from handler.jobs import worker_process
from handler.state import StateStore
from plumbing.crashpoints import ARM_VARIABLE, TRACE_VARIABLE, read_trace
from plumbing.procid import ProcessId, is_running

Point = Tuple[str, int]  # (crash point name, which time it is reached)
QUIET_SECONDS = 90.0


@dataclass
class Run:
    """One install of the packaged handler in its own LibDir, for one replay."""

    agent: FakeAgent
    ext_dir: Path
    trace: Path
    notes: Dict[str, object] = field(default_factory=dict)


Scenario = Callable[[Run], None]  # writes settings and runs what the agent runs first
Check = Callable[[Run], List[str]]  # after the agent's re-run: the broken promises


def new_run(root: Path, certificate: TenantCertificate, zip_path: Path,
            env: Dict[str, str]) -> Run:
    lib_dir = root / "waagent"
    lib_dir.mkdir(parents=True)
    for source in (certificate.crt, certificate.prv):
        shutil.copy(source, lib_dir / source.name)
    agent = FakeAgent(lib_dir=lib_dir, log_root=root / "log", certificate=TenantCertificate(
        certificate.thumbprint, lib_dir / certificate.crt.name, lib_dir / certificate.prv.name))
    agent.extra_env.update(env)
    ext_dir = agent.fresh_install(zip_path, "1.0.0")
    assert agent.run(ext_dir, "install").returncode == 0
    trace = root / "crash.trace"
    agent.extra_env[TRACE_VARIABLE] = str(trace)
    return Run(agent, ext_dir, trace)


def points_reached(trace: Path) -> List[Point]:
    """Each point's first reach, and its last when it is reached more than once."""
    counts = Counter(name for _, name in read_trace(str(trace)))
    points: List[Point] = []
    for name, count in counts.items():
        points.append((name, 1))
        if count > 1:
            points.append((name, count))
    return points


def wait_quiet(run: Run, timeout: float = QUIET_SECONDS) -> None:
    """Until no worker process of this install is alive (it ended, or was killed): a worker
    that recorded its result still writes the status after."""
    store = StateStore(run.ext_dir / "state", run.ext_dir / "mrseq")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(worker_process(job) or (job.pid > 0 and is_running(
                ProcessId(job.pid, job.start_ticks))) for job in store.jobs()):
            return
        time.sleep(0.2)
    raise AssertionError(f"workers still alive after {timeout:.0f}s")


def replay(run: Run, point: Optional[Point], scenario: Scenario, check: Check) -> List[str]:
    """Run the scenario with `point` armed, then what the agent does after a kill or a
    restart: enable again with the same sequence number, disarmed; return broken promises."""
    if point is not None:
        run.agent.extra_env[ARM_VARIABLE] = f"{point[0]}@{point[1]}"
    scenario(run)
    wait_quiet(run)
    run.agent.extra_env[ARM_VARIABLE] = ""
    rerun = run.agent.run(run.ext_dir, "enable", run.notes.get("seq", 1))  # type: ignore
    problems = [] if not rerun.killed else [f"re-run enable was killed: {rerun.output}"]
    wait_quiet(run)
    problems += check(run)
    for command in run.agent.runs:
        if "Traceback" in command.output:
            problems.append(f"{command.command} printed a traceback: {command.output[-300:]}")
    if point is not None and point[0] not in {n for _, n in read_trace(str(run.trace))}:
        problems.append("the armed point was never reached")
    return problems


def sweep(root: Path, certificate: TenantCertificate, zip_path: Path, env: Dict[str, str],
          scenario: Scenario, check: Check) -> Tuple[List[Point], Dict[str, List[str]]]:
    """A traced run to enumerate the points, then one replay per point."""
    first = new_run(root / "trace", certificate, zip_path, env)
    failures: Dict[str, List[str]] = {}
    baseline = replay(first, None, scenario, check)
    if baseline:
        failures["(no crash)"] = baseline
    points = points_reached(first.trace)
    for index, point in enumerate(points):
        run = new_run(root / f"p{index}", certificate, zip_path, env)
        problems = replay(run, point, scenario, check)
        if problems:
            failures[f"{point[0]}@{point[1]}"] = problems
    return points, failures
