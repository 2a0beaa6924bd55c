"""Which libpcap a capture uses: on a VM without one, the zip's own; without either, raw sockets.

"A VM without libpcap" is a private mount namespace in which every system libpcap file is
/dev/null (dlopen fails on each, as on a VM where none is installed).
"""
from __future__ import annotations

import glob
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest

from devtools.netns import Namespace, Topology, veth
from devtools.zipbuild import build_zip, install_zip
from tests.capture_engine import craft, helpers
from tests.capture_engine.conftest import ROOT

pytestmark = pytest.mark.root

PACKETS = 30
HIDE_SYSTEM_LIBPCAP = ('for f in "$@"; do case "$f" in --) break;; esac; '
                       'mount --bind /dev/null "$f"; shift; done; shift; exec "$@"')


def system_libpcap_files() -> List[str]:
    files = [path for pattern in ("/usr/lib/*/libpcap.so*", "/lib/*/libpcap.so*",
                                  "/usr/lib64/libpcap.so*", "/usr/lib/libpcap.so*")
             for path in glob.glob(pattern) if not os.path.islink(path)]
    assert files, "no system libpcap here: the fallback cannot be shown against one"
    return sorted(set(os.path.realpath(f) for f in files))


@pytest.fixture(scope="module")
def pair() -> Iterator[Tuple[Namespace, Namespace]]:
    with Topology("pc11") as topo:
        vm, peer = topo.namespace("vm"), topo.namespace("peer")
        for ns in (vm, peer):
            ns.run(["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1",
                    "net.ipv6.conf.all.disable_ipv6=1"])
        veth(vm, "cap0", [], peer, "peer0", [])
        yield vm, peer


def _capture_without_system_libpcap(vm: Namespace, peer: Namespace, cwd: Path,
                                     out: Path) -> dict:
    """The CLI (backend auto, CAPTURE_LIBPCAP unset) run from `cwd` with every system
    libpcap hidden, capturing PACKETS frames the peer sends."""
    argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            HIDE_SYSTEM_LIBPCAP, "sh", *system_libpcap_files(), "--",
            sys.executable, "-m", "capture_engine", "--netns", vm.name, "-i", "cap0",
            "-w", str(out), "-c", str(PACKETS), "--time-limit", "30", "--json"]
    env = {k: v for k, v in os.environ.items() if k != "CAPTURE_LIBPCAP"}
    env["PYTHONPATH"] = str(cwd)
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        helpers.wait_packet_socket(proc, vm.name)
        maps = helpers.maps_mention(proc.pid, "libpcap")
        frame = craft.frame(craft.PEER4, craft.VM4, craft.UDP, 53, 5000, "plain")
        with peer.enter():
            sender = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        with sender:
            sender.bind(("peer0", 0))
            for _ in range(PACKETS):
                sender.send(frame)
        stdout = helpers.stop_process(proc, timeout=30)
    finally:
        if proc.poll() is None:
            helpers.stop_process(proc)
    status: dict = json.loads(stdout.decode())
    status["maps"] = maps
    return status


def test_without_system_libpcap_the_zip_captures_with_its_own(pair, tmp_path) -> None:
    vm, peer = pair
    ext_dir = install_zip(build_zip(), tmp_path / "waagent")
    status = _capture_without_system_libpcap(vm, peer, ext_dir, tmp_path / "c.cap")
    assert status["packetCaptureStatus"] == "Stopped", status.get("errorMessage")
    assert status["backend"] == "libpcap", f"no libpcap found: {status['backend']}"
    assert "/capture_engine/_libpcap/" in (status["maps"] or ""), status["maps"]
    assert any(n.startswith("libpcap: bundled _libpcap/") for n in status.get("notes", [])), \
        status.get("notes")
    assert status["packetsCaptured"] == PACKETS == len(helpers.read_pcap(status["localPath"]))


def test_without_any_libpcap_the_capture_uses_raw_sockets(pair, tmp_path) -> None:
    """The source tree has no bundled libpcap: what a package without it would do."""
    vm, peer = pair
    assert not os.path.exists(ROOT + "/capture_engine/_libpcap"), "a built libpcap in the tree"
    status = _capture_without_system_libpcap(vm, peer, Path(ROOT), tmp_path / "c.cap")
    assert status["packetCaptureStatus"] == "Stopped", status.get("errorMessage")
    assert status["backend"] == "rawsocket" and status["maps"] is None, status
    assert status["packetsCaptured"] == PACKETS == len(helpers.read_pcap(status["localPath"]))


@pytest.mark.parametrize("value", ["bogus", "bundled"])
def test_a_forced_choice_that_cannot_load_is_a_coded_error(value: str, tmp_path) -> None:
    """CAPTURE_LIBPCAP=bogus names the variable; bundled in the source tree (no .so) says
    what was tried; the libpcap backend then refuses to start with its code."""
    env = dict(os.environ, CAPTURE_LIBPCAP=value)
    done = subprocess.run([sys.executable, "-m", "capture_engine", "-i", "lo", "-w",
                           str(tmp_path / "x.cap"), "--backend", "libpcap", "--json",
                           "--time-limit", "1"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert "Traceback" not in done.stderr, done.stderr
    status = json.loads(done.stdout)
    assert done.returncode != 0 and status["packetCaptureStatus"] == "Error", status
    assert status["errorCode"] not in (None, 1), status
    assert "CAPTURE_LIBPCAP" in status["errorMessage"], status["errorMessage"]
    if value == "bundled":
        assert "_libpcap/" in status["errorMessage"], status["errorMessage"]
    assert not (tmp_path / "x.cap").exists(), "nothing may be written"
