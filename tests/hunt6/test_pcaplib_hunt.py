"""Hunt 6: which libpcap is loaded when the one found is not a usable libpcap."""
from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterator, List

import pytest

from capture_engine import pcaplib
from devtools.netns import Namespace, Topology
from tests.capture_engine.conftest import ROOT

# A real shared object that is not libpcap: what an old or wrong libpcap.so looks like to
# ctypes (it opens, and pcap_create is missing).
NOT_PCAP = next(iter(sorted(glob.glob("/usr/lib/*/libz.so.1") + glob.glob("/lib*/libz.so.1"))),
                "")
OVERLAY = 'for f in "$@"; do case "$f" in --) break;; esac; mount --bind "$NOT_PCAP" "$f"; ' \
          'shift; done; shift; exec "$@"'


def _system_libpcap_files() -> List[str]:
    files = [path for pattern in ("/usr/lib/*/libpcap.so*", "/lib/*/libpcap.so*",
                                  "/usr/lib64/libpcap.so*", "/usr/lib/libpcap.so*")
             for path in glob.glob(pattern) if not os.path.islink(path)]
    assert files, "no system libpcap here to replace"
    return sorted(set(os.path.realpath(f) for f in files))


def _cli_with_wrong_libpcap(args: List[str], cwd: Path) -> subprocess.CompletedProcess:
    """The CLI with every system libpcap file replaced by a library that is not libpcap
    (in a private mount namespace): the system's soname opens, its functions are missing."""
    argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", OVERLAY, "sh",
            *_system_libpcap_files(), "--", sys.executable, "-m", "capture_engine", *args]
    env = {k: v for k, v in os.environ.items() if k != "CAPTURE_LIBPCAP"}
    env.update(PYTHONPATH=ROOT, NOT_PCAP=NOT_PCAP)
    return subprocess.run(argv, cwd=str(cwd), env=env, capture_output=True, text=True,
                          timeout=60)


@pytest.fixture(scope="module")
def netns() -> Iterator[Namespace]:
    with Topology("h11c") as topo:
        yield topo.namespace("lib")


@pytest.mark.root
def test_a_libpcap_without_its_functions_is_a_coded_error(tmp_path) -> None:
    """-d with an expression needs libpcap: a libpcap.so lacking pcap_create is 120 naming
    what is wrong with it, not an AttributeError traceback."""
    assert NOT_PCAP, "no libz.so.1 to stand in for a wrong libpcap"
    done = _cli_with_wrong_libpcap(["-w", "x.pcap", "-d", "tcp", "port", "80"], tmp_path)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 2 and "error 120" in done.stderr, done.stderr
    assert "pcap_create" in done.stderr, f"the reason is not given: {done.stderr}"


@pytest.mark.root
def test_auto_backend_falls_back_to_raw_sockets_and_says_why(netns, tmp_path) -> None:
    done = _cli_with_wrong_libpcap(["--netns", netns.name, "-i", "lo", "-w", "x.pcap",
                                    "--time-limit", "0.5", "--json"], tmp_path)
    assert "Traceback" not in done.stderr, done.stderr
    status = json.loads(done.stdout)
    assert done.returncode == 0 and status["backend"] == "rawsocket", status
    assert any("libpcap" in note and "pcap_create" in note for note in status["notes"]), \
        f"the status does not say why libpcap was not used: {status['notes']}"


def test_a_truncated_bundled_libpcap_is_a_coded_error_not_a_crash(tmp_path) -> None:
    """An install whose bundled .so was cut short (a disk full while unzipping): dlopen maps
    past the file's end and the process dies of SIGBUS. It must be refused with 120 naming
    the file and why (in a child process: the crash would take pytest with it)."""
    arch = pcaplib.ARCHES[os.uname().machine]
    target = tmp_path / arch / pcaplib.BUNDLED_NAME
    target.parent.mkdir()
    with open(_system_libpcap_files()[0], "rb") as stream:
        target.write_bytes(stream.read(4096))
    code = ("import sys\nfrom capture_engine import pcaplib\n"
            "from capture_engine.errors import BackendUnavailableError\n"
            f"pcaplib.BUNDLED_DIR = {str(tmp_path)!r}\n"
            "try:\n    pcaplib.loaded()\nexcept BackendUnavailableError as exc:\n"
            "    print(exc.code, exc.message)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": ROOT, pcaplib.CHOICE_ENV: "bundled"})
    assert done.returncode == 0, f"loading crashed (exit {done.returncode}): {done.stderr}"
    assert done.stdout.startswith("120 ") and str(target) in done.stdout, done.stdout
    assert "truncated" in done.stdout, f"why it cannot load is not said: {done.stdout}"


def test_the_bundled_libpcap_stands_in_for_a_wrong_system_one(tmp_path, monkeypatch) -> None:
    """auto: a system soname that opens but is not libpcap is skipped for the bundled one."""
    arch = pcaplib.ARCHES[os.uname().machine]
    target = tmp_path / arch / pcaplib.BUNDLED_NAME
    target.parent.mkdir()
    shutil.copyfile(_system_libpcap_files()[0], target)
    monkeypatch.setattr(pcaplib, "BUNDLED_DIR", str(tmp_path))
    monkeypatch.setattr(pcaplib, "SONAMES", (NOT_PCAP,))
    monkeypatch.setattr(pcaplib, "_loaded", None)
    monkeypatch.setattr(pcaplib.ctypes.util, "find_library", lambda name: None)
    monkeypatch.delenv(pcaplib.CHOICE_ENV, raising=False)
    loaded = pcaplib.loaded()
    assert loaded.origin == "bundled" and loaded.name == str(target), loaded
