"""The subprocess wrapper: group kill at timeout, capped output, clear failures."""
from __future__ import annotations

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
