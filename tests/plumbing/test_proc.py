"""The subprocess wrapper: group kill at timeout or any exit, capped output, clear failures."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from plumbing import proc


def test_timeout_kills_the_whole_process_group(tmp_path):
    marker = tmp_path / "grandchild.pid"
    script = f"sleep 30 & echo $! > {marker}; wait"
    result = proc.run(["sh", "-c", script], timeout=0.5, check=False)
    assert result.timed_out, "the command should have timed out"
    grandchild = int(marker.read_text())
    for _ in range(50):  # the kernel delivers SIGKILL asynchronously; bounded wait
        try:
            if psutil.Process(grandchild).status() == psutil.STATUS_ZOMBIE:
                break  # dead; only waiting for a parent that may never reap it
        except psutil.NoSuchProcess:
            break
        time.sleep(0.02)
    else:
        pytest.fail(f"grandchild {grandchild} survived the group kill")


def test_output_is_capped_and_marked_truncated():
    result = proc.run(["sh", "-c", "head -c 200000 /dev/zero | tr '\\0' x"], timeout=10, cap=1000)
    assert len(result.stdout) == 1000 and result.truncated


def test_failure_raises_with_command_code_and_output():
    with pytest.raises(proc.CommandError) as caught:
        proc.run(["sh", "-c", "echo boom >&2; exit 3"], timeout=10)
    assert caught.value.result.returncode == 3
    assert "exited with 3" in str(caught.value) and "boom" in str(caught.value)


def test_a_missing_program_is_a_command_error_not_an_oserror():
    with pytest.raises(proc.CommandError, match="cannot start"):
        proc.run(["/nonexistent/program"], timeout=5)


def test_shell_strings_are_refused():
    with pytest.raises(TypeError):
        proc.run("echo hi", timeout=5)  # type: ignore[arg-type]


def gone(pid: int, timeout: float = 2.0) -> bool:
    """Dead (or a zombie nobody reaped yet) within `timeout` s: SIGKILL lands asynchronously."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.02)
    return False


class Stop(Exception):
    """What a signal handler raises in the caller (as the worker's SIGTERM handler does)."""


def test_an_exception_leaving_run_kills_the_whole_process_group(tmp_path):
    marker = tmp_path / "grandchild.pid"
    script = f"sleep 30 & echo $! > {marker}; wait"

    def stop(_signum, _frame):
        raise Stop

    old = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, 0.5)
    try:
        with pytest.raises(Stop):
            proc.run(["sh", "-c", script], timeout=30, check=False)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert gone(int(marker.read_text())), "the command's group must die with the caller's wait"


def test_a_command_stays_in_our_session_and_dies_with_it(tmp_path):
    """Own process group (for the timeout kill), but the caller's session (for kill_session)."""
    marker = tmp_path / "command.pid"
    code = ("import sys; from plumbing import proc; "
            f"proc.run(['sh', '-c', 'echo $$ > {marker}; exec sleep 30'], timeout=60)")
    leader = subprocess.Popen([sys.executable, "-c", code], start_new_session=True,
                              env=dict(os.environ, PYTHONPATH=os.getcwd()))
    try:
        deadline = time.monotonic() + 10
        while not marker.exists() or not marker.read_text().strip():
            assert time.monotonic() < deadline, "the command should start"
            time.sleep(0.02)
        command = int(marker.read_text())
        assert os.getsid(command) == leader.pid and os.getpgid(command) == command, \
            "the command leads its own group inside the caller's session"
        killed = proc.kill_session(leader.pid)
        assert command in killed and leader.pid in killed and gone(command), killed
    finally:
        leader.kill()
        leader.wait(10)


def test_kill_session_never_signals_our_own_session():
    assert proc.kill_session(os.getsid(0)) == [] and proc.kill_session(1) == []
