"""plumbing.files: atomic replacement and flock, across real processes."""
from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from plumbing.files import LockTimeout, locked, write_atomic

HOLD = """
import sys, time
from plumbing.files import locked
with locked(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.readline()
"""


def test_write_atomic_replaces_with_its_mode_and_leaves_no_temp_file(tmp_path):
    target = tmp_path / "sub" / "record.json"
    write_atomic(target, b"one", mode=0o644)
    write_atomic(str(target), b"two")
    assert target.read_bytes() == b"two"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert os.listdir(target.parent) == ["record.json"]


def test_a_failed_write_keeps_the_old_file_and_removes_its_temp(tmp_path):
    target = tmp_path / "record.json"
    write_atomic(target, b"old")
    with pytest.raises(TypeError):
        write_atomic(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["record.json"]


@pytest.mark.parametrize("kind", ["file", "folder"])
def test_a_lock_held_by_another_process_times_out_then_is_taken_when_it_exits(tmp_path, kind):
    path = tmp_path / "lock"
    if kind == "folder":
        path.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True,
                              cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(LockTimeout):
            with locked(path, wait=0.2):
                pass
    finally:
        holder.kill()
        holder.wait()
    with locked(path, wait=5.0) as fd:
        assert fd >= 0
