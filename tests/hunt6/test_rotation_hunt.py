"""Hunt 6: -C/-W/--max-bytes rotation and -z against their documented bounds (no traffic)."""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import List

from capture_engine.naming import Rotation
from capture_engine.output import OutputPlan, Recorder
from capture_engine.pcapfile import FdSink
from capture_engine.postrotate import PostRotate

PAYLOAD = 200
RECORD = 16 + PAYLOAD  # a file of 1,000 bytes rotates after 5 records: 24 + 5 x 216 = 1,104


def _records(count: int) -> bytes:
    one = (1).to_bytes(4, "little") + bytes(4) + PAYLOAD.to_bytes(4, "little") * 2
    return (one + bytes(PAYLOAD)) * count


def _recorder(path: Path, rotation: Rotation) -> Recorder:
    recorder = Recorder(OutputPlan(str(path), 65535, 0, rotation=rotation), FdSink())
    recorder.start()
    return recorder


def _script(folder: Path, body: str) -> str:
    script = folder / "cmd.sh"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)
    return str(script)


def test_max_bytes_is_never_passed_by_a_rotation_header(tmp_path) -> None:
    """--max-bytes caps all files together: a size rotation whose new file's header and
    next record do not fit stops instead of leaving a header-only file past the cap."""
    base = tmp_path / "f.pcap"
    recorder = _recorder(base, Rotation(str(base), file_bytes=1000, max_total_bytes=1110))
    recorder.accept_batch(_records(7), 7)
    recorder.close()
    sizes = {name: os.path.getsize(tmp_path / name) for name in os.listdir(tmp_path)}
    assert recorder.done_reason == "ByteLimitReached", recorder.done_reason
    assert recorder.bytes_written <= 1110 and sum(sizes.values()) <= 1110, \
        f"--max-bytes 1110 passed: {recorder.bytes_written} bytes, files {sizes}"


def test_max_bytes_is_never_passed_by_a_time_rotation_header(tmp_path) -> None:
    clock = [1000.0]
    base = tmp_path / "g.pcap"
    rotation = Rotation(str(base), seconds=5, max_total_bytes=24 + 2 * RECORD + 10)
    recorder = Recorder(OutputPlan(str(base), 65535, 0, rotation=rotation), FdSink(),
                        wall=lambda: clock[0])
    recorder.start()
    recorder.accept_batch(_records(2), 2)
    clock[0] += 10
    recorder.accept_batch(_records(1), 1)
    recorder.close()
    assert recorder.bytes_written <= rotation.max_total_bytes, \
        f"{recorder.bytes_written} bytes written past --max-bytes {rotation.max_total_bytes}"
    assert recorder.done_reason == "ByteLimitReached", recorder.done_reason


def test_postrotate_never_runs_on_the_file_that_reused_the_name(tmp_path) -> None:
    """-C -W 1 -z gzip (the doc's -z example with a ring of one name): the closed file's
    name is the new live file's the moment -z runs; gzip must not compress and delete it."""
    base = tmp_path / "f.pcap"
    reports: List[str] = []
    post = PostRotate(str(shutil.which("gzip")), reports.append)
    recorder = _recorder(base, Rotation(str(base), file_bytes=1000, file_count=1))
    recorder.on_closed = post.submit
    recorder.accept_batch(_records(6), 6)
    assert post.close(wait=30), reports
    recorder.check_file()
    assert recorder.error is None, f"-z deleted the live capture file: {recorder.error}"
    assert base.exists() and not (tmp_path / "f.pcap.gz").exists(), os.listdir(tmp_path)


def test_postrotate_skips_a_queued_file_whose_name_was_reused(tmp_path) -> None:
    """-W 2 behind a slow -z: by the command's turn the ring has reused the name."""
    first, go, ran = tmp_path / "f.pcap0", tmp_path / "go", tmp_path / "ran"
    other = tmp_path / "f.pcap1"
    for path in (first, other):
        path.write_bytes(_records(1))
    reports: List[str] = []
    post = PostRotate(_script(tmp_path, f"while [ ! -e {go} ]; do sleep 0.05; done\n"
                                        f"echo \"$1\" >> {ran}\n"), reports.append)
    post.submit(str(other))  # the command waits on this one until `go`
    post.submit(str(first))
    first.unlink()
    first.write_bytes(_records(2))  # the ring's newer, live file of that name
    go.touch()
    assert post.close(wait=30), reports
    assert ran.read_text().split() == [str(other)], "-z ran on the newer file of that name"
    assert any("reused" in text for text in reports), reports


def test_postrotate_still_runs_on_a_file_left_in_place(tmp_path) -> None:
    base = tmp_path / "f.pcap"
    post = PostRotate(str(shutil.which("gzip")), [].append)
    recorder = _recorder(base, Rotation(str(base), file_bytes=1000))
    recorder.on_closed = post.submit
    recorder.accept_batch(_records(6), 6)
    assert post.close(wait=30)
    recorder.close()
    assert sorted(os.listdir(tmp_path)) == ["f.pcap.gz", "f.pcap1"], os.listdir(tmp_path)


def test_postrotate_file_beginning_with_a_dash_is_never_an_option(tmp_path,
                                                                  monkeypatch) -> None:
    """-w ./-n.pcap -C 1 -z gzip: -z gets the name relative, as -w named it; `-n.pcap`
    alone would be read by gzip as options, so it gets `./-n.pcap`."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "-n.pcap").write_bytes(_records(1))
    reports: List[str] = []
    post = PostRotate(str(shutil.which("gzip")), reports.append)
    post.submit("-n.pcap")
    assert post.close(wait=30), reports
    assert reports == [] and (tmp_path / "-n.pcap.gz").exists(), (reports,
                                                                  os.listdir(tmp_path))


def test_postrotate_close_says_which_files_it_gave_up_on(tmp_path) -> None:
    """The queue full of files behind a hanging command at exit: close() gives up after its
    wait, and says so (the files queued are never run)."""
    reports: List[str] = []
    post = PostRotate(_script(tmp_path, "exec sleep 30\n"), reports.append, timeout=2,
                      max_waiting=1)
    post.submit(str(tmp_path / "a"))
    time.sleep(0.5)  # the command runs on a; b waits in the full queue
    post.submit(str(tmp_path / "b"))
    started = time.monotonic()
    assert not post.close(wait=0.5)
    assert time.monotonic() - started < 5, "close() outlived its wait"
    assert any("at exit" in text for text in reports), \
        f"giving up on the queued files is not reported: {reports}"


def test_a_wrapped_name_that_is_a_link_never_clobbers_its_target(tmp_path) -> None:
    """-C -W 2 reuses f.pcap0: a symlink or a hard link put at that name (to /etc/shadow,
    say) is replaced by a new file; the file it points at is never written."""
    precious = tmp_path / "precious"
    precious.write_text("keep me")
    other = tmp_path / "hard"
    other.write_text("keep me too")
    base = tmp_path / "f.pcap"
    os.symlink(precious, str(base) + "0")
    os.link(other, str(base) + "1")
    recorder = _recorder(base, Rotation(str(base), file_bytes=1000, file_count=2))
    recorder.accept_batch(_records(12), 12)
    recorder.close()
    assert precious.read_text() == "keep me" and other.read_text() == "keep me too"
    for name in ("f.pcap0", "f.pcap1"):
        assert not os.path.islink(tmp_path / name) and \
            os.stat(tmp_path / name).st_ino not in (precious.stat().st_ino,
                                                     other.stat().st_ino), name
