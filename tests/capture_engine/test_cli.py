"""The local CLI: tcpdump-like flags, --json summary, silence off a terminal, live view on one."""
from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time

import pytest

from tests.capture_engine import helpers, traffic
from tests.capture_engine.conftest import ROOT

CLI = [sys.executable, "-m", "capture_engine"]


def _cli(lab, args, **kwargs):
    proc = subprocess.Popen(CLI + ["--netns", lab.vm.name, "-i", lab.vm_if] + args, cwd=ROOT,
                            start_new_session=True, **kwargs)
    helpers.wait_packet_socket(proc, lab.vm.name)
    return proc


@pytest.mark.root
def test_count_and_expression_with_json_summary(lab, tmp_path):
    out = str(tmp_path / "c.cap")
    proc = _cli(lab, ["-w", out, "-c", "5", "--time-limit", "20", "--json", "udp"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    traffic.generate(lab)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr.decode()
    status = json.loads(stdout)
    assert status["stopReason"] == "PacketCountReached" and status["packetsCaptured"] == 5
    records = helpers.read_pcap(out)
    assert len(records) == 5 and all(r.data[23] == 17 or r.data[20] == 17 for r in records), \
        "the tcpdump expression 'udp' let something else in"
    assert stderr == b"", f"not silent off a terminal: {stderr!r}"


@pytest.mark.root
def test_silent_when_not_on_a_terminal(lab, tmp_path):
    proc = _cli(lab, ["-w", str(tmp_path / "q.cap"), "--time-limit", "1", "--protocol", "TCP"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0 and stdout == b"" and stderr == b"", (stdout, stderr)


@pytest.mark.root
def test_live_progress_on_a_terminal(lab, tmp_path):
    master, slave = pty.openpty()
    proc = _cli(lab, ["-w", str(tmp_path / "t.cap"), "--time-limit", "2"], stdin=slave,
                stdout=slave, stderr=slave,
                env={**os.environ, "COLUMNS": "120", "TERM": "xterm"})
    os.close(slave)
    traffic.generate(lab)
    screen = b""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            screen += chunk
        elif proc.poll() is not None:
            break
    proc.wait(10)
    os.close(master)
    text = screen.decode(errors="replace")
    for word in ("packets", "dropped", "elapsed / limit", "TimeExceeded"):
        assert word in text, f"{word!r} not on the terminal: {text[-600:]!r}"


def test_print_filter_shows_tcpdump_expression_and_program():
    done = subprocess.run(CLI + ["-d", "--filter", '{"protocol": "TCP", "remotePort": "443"}'],
                          cwd=ROOT, capture_output=True, timeout=30)
    assert done.returncode == 0, done.stderr.decode()
    text = done.stdout.decode()
    assert "tcp and ((outbound and dst port 443) or (inbound and src port 443))" in text, text
    assert "{ 0x20, 0, 0, 0xfffff004 }," in text, "the program reads no packet's direction"
    assert "{ 0x6, 0, 0," in text, text


@pytest.mark.parametrize("args,code", [
    (["-w", "x.cap", "--remote-port", "99999"], "error 103"),
    (["-w", "x.cap", "--protocol", "icmp"], "error 101"),
    (["-w", "x.cap", "-s", "-1"], "error 105"),
    (["-w", "x.cap", "tcp port eleventy"], "error 109"),
])
def test_bad_flags_exit_2_with_a_code(args, code, tmp_path):
    done = subprocess.run(CLI + args, cwd=str(tmp_path), capture_output=True, timeout=30,
                          env={**os.environ, "PYTHONPATH": ROOT})
    assert done.returncode == 2 and code in done.stderr.decode(), done.stderr.decode()


@pytest.mark.parametrize("target", ["folder", "folder/"])
def test_w_naming_a_folder_is_refused_not_written_beside_it(target, tmp_path):
    (tmp_path / "folder").mkdir()
    done = subprocess.run(CLI + ["-w", target, "--time-limit", "1", "udp"], cwd=str(tmp_path),
                          capture_output=True, timeout=30, env={**os.environ, "PYTHONPATH": ROOT})
    assert done.returncode == 2 and "error 106" in done.stderr.decode() and \
        "-w" in done.stderr.decode(), done.stderr.decode()
    assert sorted(os.listdir(tmp_path)) == ["folder"] and not os.listdir(tmp_path / "folder")
