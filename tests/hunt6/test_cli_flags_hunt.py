"""Hunt 6: the CLI's tcpdump flags fed hostile values: exit 2 naming the flag, no traceback."""
from __future__ import annotations

import os
import subprocess
import sys
from typing import Iterator, List

import pytest

from devtools.netns import Namespace, Topology
from tests.capture_engine.conftest import ROOT


def _cli(args: List[str], cwd: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "capture_engine", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": ROOT})


@pytest.mark.parametrize("flag,value", [("-C", "\u00b2"), ("-G", "\u00b2"), ("-W", "\u00b9"),
                                        ("-B", "\u00b3")])
def test_a_superscript_digit_is_refused_not_a_traceback(flag: str, value: str,
                                                        tmp_path) -> None:
    """'²'.isdigit() is true but int('²') raises: the flag must be refused with 105."""
    extra = ["-C", "1"] if flag == "-W" else []
    done = _cli(["-w", "x.pcap", *extra, flag, value], str(tmp_path))
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 2 and "error 105" in done.stderr and flag in done.stderr, \
        done.stderr


def test_an_empty_direction_is_refused(tmp_path) -> None:
    """-Q '' is not in/out/inout (tcpdump refuses it): never silently 'inout'."""
    done = _cli(["-w", "x.pcap", "-Q", "", "-d"], str(tmp_path))
    assert done.returncode == 2 and "error 100" in done.stderr and "-Q" in done.stderr, \
        (done.returncode, done.stderr)


@pytest.fixture(scope="module")
def netns() -> Iterator[Namespace]:
    with Topology("h11c") as topo:
        yield topo.namespace("cli")


@pytest.mark.root
@pytest.mark.parametrize("command", ["gzip -9", "no-such-program-h11c", "$(touch pwned)"])
def test_a_postrotate_command_that_cannot_run_is_refused_at_start(command: str, netns,
                                                                    tmp_path) -> None:
    """-z names one program: one that is not there (or has arguments, or shell syntax) is a
    usage error naming -z before any capture, not a capture that exits 0 and never runs it."""
    done = _cli(["--netns", netns.name, "-i", "lo", "-w", "x.pcap", "-C", "1", "-z", command,
                 "--time-limit", "1"], str(tmp_path))
    assert done.returncode == 2 and "error 100" in done.stderr and "-z" in done.stderr, \
        (done.returncode, done.stderr)
    assert not (tmp_path / "x.pcap").exists() and not (tmp_path / "pwned").exists()
