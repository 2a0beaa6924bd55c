"""Crash points: inert by default, traced when asked, SIGKILL exactly where armed."""
from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from plumbing.crashpoints import ARM_VARIABLE, TRACE_VARIABLE, read_trace

ROOT = Path(__file__).resolve().parents[2]
PROGRAM = ("from plumbing.crashpoints import crashpoint\n"
           "for step in ('a', 'b', 'a', 'c'):\n"
           "    crashpoint(step)\n"
           "print('finished')\n")


def _run(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PROGRAM], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=30)


def test_unarmed_points_do_nothing() -> None:
    done = _run({"PYTHONPATH": str(ROOT)})
    assert done.returncode == 0 and "finished" in done.stdout, f"unarmed run died: {done}"


def test_trace_lists_every_point_in_order(tmp_path: Path) -> None:
    trace = tmp_path / "trace"
    done = _run({"PYTHONPATH": str(ROOT), TRACE_VARIABLE: str(trace)})
    assert done.returncode == 0, done.stderr
    assert [name for _, name in read_trace(str(trace))] == ["a", "b", "a", "c"]


def test_armed_point_kills_at_first_reach(tmp_path: Path) -> None:
    trace = tmp_path / "trace"
    done = _run({"PYTHONPATH": str(ROOT), TRACE_VARIABLE: str(trace), ARM_VARIABLE: "b"})
    assert done.returncode == -signal.SIGKILL, f"expected SIGKILL at b, got {done.returncode}"
    assert [name for _, name in read_trace(str(trace))] == ["a", "b"]


def test_armed_nth_reach(tmp_path: Path) -> None:
    trace = tmp_path / "trace"
    done = _run({"PYTHONPATH": str(ROOT), TRACE_VARIABLE: str(trace), ARM_VARIABLE: "a@2"})
    assert done.returncode == -signal.SIGKILL, f"expected SIGKILL at the 2nd a: {done}"
    assert [name for _, name in read_trace(str(trace))] == ["a", "b", "a"]
