"""tcpdump's -C/-G/-W/-z rotation in the recorder and the CLI's flags (no traffic needed)."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from capture_engine import cli
from capture_engine.naming import Rotation
from capture_engine.output import OutputPlan, Recorder
from capture_engine.pcapfile import FdSink
from capture_engine.postrotate import PostRotate
from tests.capture_engine import helpers
from tests.capture_engine.conftest import ROOT

PAYLOAD = 200
RECORD = 16 + PAYLOAD  # 216 bytes: a file of -C 1000 bytes takes 5 (24 + 4 x 216 = 888)


def _records(count: int) -> bytes:
    one = (1).to_bytes(4, "little") + bytes(4) + PAYLOAD.to_bytes(4, "little") * 2
    return (one + bytes(PAYLOAD)) * count


class Wall:
    """The recorder's clock for -G, moved by the test."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _recorder(tmp_path, wall: Wall, closed: list, **rotation) -> Recorder:
    plan_rotation = Rotation(str(tmp_path / rotation.pop("pattern", "f.pcap")), **rotation)
    plan = OutputPlan(plan_rotation.pattern, 65535, 0, rotation=plan_rotation)
    recorder = Recorder(plan, FdSink(), wall=wall)
    recorder.on_closed = closed.append
    recorder.start()
    return recorder


def _counts(tmp_path) -> dict:
    return {name: len(helpers.read_pcap(str(tmp_path / name)))
            for name in sorted(os.listdir(tmp_path))}


def test_names_follow_tcpdump():
    assert [Rotation("f", file_bytes=1).name(0, n) for n in (0, 1, 12)] == ["f", "f1", "f12"]
    assert Rotation("f", file_bytes=1, file_count=3).name(0, 2) == "f2"
    assert Rotation("f", file_bytes=1, file_count=10).name(0, 0) == "f0"
    assert Rotation("f", file_bytes=1, file_count=11).name(0, 3) == "f03", "W=11: 2 digits"
    assert Rotation("f", file_bytes=1, file_count=1).name(0, 0) == "f", "W=1: no digits"
    stamp = time.strftime("%H%M%S", time.localtime(1_700_000_000))
    assert Rotation("g-%H%M%S", seconds=5).name(1_700_000_000) == f"g-{stamp}"
    assert Rotation("g-%H%M%S", seconds=5, file_count=3).name(1_700_000_000) == \
        f"g-{stamp}", "-G -W without -C: no number"
    assert Rotation("g-%H", seconds=5, file_bytes=1, file_count=3).name(3600, 1).endswith("1")


def test_size_rotation_starts_a_file_once_the_last_is_larger_than_c(tmp_path):
    closed: list = []
    recorder = _recorder(tmp_path, Wall(1000), closed, file_bytes=1000)
    recorder.accept_batch(_records(12), 12)
    recorder.close()
    assert _counts(tmp_path) == {"f.pcap": 5, "f.pcap1": 5, "f.pcap2": 2}, \
        "tcpdump: file, file1, file2; 5 records each (the 5th takes the file past -C)"
    assert os.path.getsize(tmp_path / "f.pcap") == 24 + 5 * RECORD
    assert closed == [str(tmp_path / "f.pcap"), str(tmp_path / "f.pcap1")], \
        "-z runs on each file a rotation closed, not on the last"
    assert not recorder.done


def test_size_rotation_with_w_wraps_and_overwrites(tmp_path):
    recorder = _recorder(tmp_path, Wall(1000), [], file_bytes=1000, file_count=2)
    for _ in range(12):  # one record per batch: the rotation is decided between batches too
        recorder.accept_batch(_records(1), 1)
    recorder.close()
    assert _counts(tmp_path) == {"f.pcap0": 2, "f.pcap1": 5}, "f.pcap0 written again"
    assert list(recorder.files) == [str(tmp_path / "f.pcap1"), str(tmp_path / "f.pcap0")]


def test_time_rotation_follows_the_clock_on_the_next_packet(tmp_path):
    wall = Wall(1000.4)
    recorder = _recorder(tmp_path, wall, [], pattern="g-%H%M%S.pcap", seconds=10)
    for now in (1005.0, 1010.2, 1015.0, 1039.9):  # nothing arrives in 1020-1029
        wall.now = now
        recorder.accept_batch(_records(2), 2)
    recorder.close()
    name = lambda t: time.strftime("g-%H%M%S.pcap", time.localtime(t))  # noqa: E731
    assert _counts(tmp_path) == {name(1000): 2, name(1010): 4, name(1039): 2}, \
        "a file per interval that had a packet, named by the time that started it"


def test_time_rotation_with_w_ends_after_w_files(tmp_path):
    wall, closed = Wall(1000), []
    recorder = _recorder(tmp_path, wall, closed, pattern="g-%H%M%S.pcap", seconds=10,
                         file_count=2)
    for now in (1011, 1022, 1023):
        wall.now = now
        recorder.accept_batch(_records(1), 1)
    recorder.close()
    assert recorder.done_reason == "FileCountReached"
    assert recorder.packets == 1 and len(_counts(tmp_path)) == 2, _counts(tmp_path)
    assert len(closed) == 2, "tcpdump runs -z on the W-th file before it exits"


def test_time_and_size_rotation_number_files_per_interval(tmp_path):
    wall = Wall(1000)
    recorder = _recorder(tmp_path, wall, [], pattern="g-%H%M%S.pcap", seconds=10,
                         file_bytes=1000, file_count=3)
    recorder.accept_batch(_records(7), 7)
    wall.now = 1010
    recorder.accept_batch(_records(16), 16)
    recorder.close()
    name = lambda t: time.strftime("g-%H%M%S.pcap", time.localtime(t))  # noqa: E731
    assert _counts(tmp_path) == {f"{name(1000)}0": 5, f"{name(1000)}1": 2,
                                 f"{name(1010)}0": 1, f"{name(1010)}1": 5,
                                 f"{name(1010)}2": 5}, "each interval counts from 0, wraps at W"


def test_max_bytes_caps_all_rotated_files_together(tmp_path):
    recorder = _recorder(tmp_path, Wall(1000), [], file_bytes=1000, max_total_bytes=2000)
    recorder.accept_batch(_records(12), 12)
    recorder.close()
    assert recorder.done_reason == "ByteLimitReached" and recorder.bytes_written <= 2000
    assert recorder.packets == 9, f"2000 bytes hold 2 headers, 9 records: {recorder.packets}"


def _request(*argv: str):
    return cli.build_request(cli._parser().parse_args(["-w", "/tmp/x.pcap", *argv]))


def test_c_rotates_in_millions_of_bytes():
    request = _request("-C", "2")
    assert request.rotation is not None and request.rotation.file_bytes == 2_000_000, \
        "-C is tcpdump's file size in millions of bytes"
    assert request.total_bytes > 2_000_000, "-C is no longer a byte cap"


def test_g_rotates_instead_of_stopping():
    request = _request("-G", "30", "-W", "4")
    assert request.rotation is not None and request.rotation.seconds == 30
    assert request.rotation.file_count == 4
    assert request.time_limit > 30, "-G no longer stops the capture"


def test_stop_conditions_keep_their_own_names():
    request = _request("--time-limit", "5", "--max-bytes", "5000", "-c", "7")
    assert (request.time_limit, request.total_bytes, request.packet_count) == (5, 5000, 7)
    assert request.rotation is None


def test_capture_control_flags_reach_the_request():
    request = _request("-Q", "IN", "-B", "4096", "--immediate-mode")
    assert request.source.direction == "in" and request.source.immediate
    assert request.source.buffer_bytes == 4096 * 1024, "-B is in KiB"


@pytest.mark.parametrize("args,code,field", [
    (["-W", "3"], "error 100", "-W"),
    (["-C", "0"], "error 105", "-C"),
    (["-C", "1.5"], "error 105", "-C"),
    (["-G", "0"], "error 105", "-G"),
    (["-z", "gzip"], "error 100", "-z"),
    (["-C", "1", "--ring", "3"], "error 100", "--ring"),
    (["-Q", "sideways"], "error 100", "-Q"),
    (["-B", "0"], "error 105", "-B"),
])
def test_bad_rotation_and_control_flags_exit_2_naming_the_flag(args, code, field, tmp_path):
    done = subprocess.run([sys.executable, "-m", "capture_engine", "-w", "x.pcap", *args],
                          cwd=str(tmp_path), capture_output=True, timeout=30,
                          env={**os.environ, "PYTHONPATH": ROOT})
    err = done.stderr.decode()
    assert done.returncode == 2 and code in err and field in err, err
    assert "Traceback" not in err, err


def test_help_reads_like_tcpdump():
    done = subprocess.run([sys.executable, "-m", "capture_engine", "--help"], cwd=ROOT,
                          capture_output=True, timeout=30)
    text = done.stdout.decode()
    usage = text.split("\n\n")[0]
    for flag in ("[ -c count ]", "[ -C file_size ]", "[ -G rotate_seconds ]",
                 "[ -W filecount ]", "[ -z postrotate-command ]", "[ -Q in|out|inout ]",
                 "[ -B buffer_size ]", "[ --immediate-mode ]", "[ expression ]"):
        assert flag in usage, f"{flag} not in the tcpdump-style usage: {usage}"
    assert "rotation" in text.lower() and "stop conditions" in text.lower(), text


def test_postrotate_runs_the_command_with_the_closed_file(tmp_path):
    script = tmp_path / "record.sh"
    script.write_text(f"#!/bin/sh\necho \"$1\" >> {tmp_path / 'ran'}\n")
    script.chmod(0o755)
    reports: list = []
    post = PostRotate(str(script), reports.append)
    for name in ("a.pcap", "a.pcap1"):
        post.submit(str(tmp_path / name))
    assert post.close(wait=30)
    assert (tmp_path / "ran").read_text().split() == [str(tmp_path / "a.pcap"),
                                                      str(tmp_path / "a.pcap1")]
    assert reports == [] and post.failures == 0


def test_postrotate_never_blocks_and_bounds_a_hanging_command(tmp_path):
    script = tmp_path / "hang.sh"
    script.write_text("#!/bin/sh\nexec sleep 30\n")
    script.chmod(0o755)
    reports: list = []
    post = PostRotate(str(script), reports.append, timeout=0.5, max_waiting=1)
    started = time.monotonic()
    for n in range(4):
        post.submit(str(tmp_path / f"f{n}"))
    assert time.monotonic() - started < 0.5, "submit waited for the command"
    assert post.close(wait=10), reports
    assert any("timed out after 0.5 s" in text for text in reports), reports
    assert any("not run on" in text for text in reports), \
        f"a file beyond the queue's bound is reported: {reports}"
    assert post.failures == 4, reports


def test_postrotate_that_cannot_start_is_reported(tmp_path):
    reports: list = []
    post = PostRotate(str(tmp_path / "no-such-command"), reports.append)
    post.submit(str(tmp_path / "f"))
    assert post.close(wait=10)
    assert len(reports) == 1 and "no-such-command" in reports[0], reports
