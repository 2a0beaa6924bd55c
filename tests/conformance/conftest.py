"""The conformance run's labs: one installed extension per kind, each with what it needs."""
# ruff: noqa: F811 - the handler fixtures are imported so pytest finds them here
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Iterator

import pytest

from devtools.fabric import TenantCertificate
from devtools.loopfs import LoopFilesystems
from devtools.netns import Topology, veth
from devtools.pathlab import three_namespaces
from tests.conformance.extract import CORPUS
from tests.conformance.lanes import CaptureLab, Lane, SnapshotLab, install_lane
from tests.conformance.traffic import PEER, VM
from tests.handler.conftest import certificate, extension_zip  # noqa: F401 - fixtures
from tests.snapshot.conftest import write_vmbackup_conf

PREFIX = "cf"  # namespaces of this suite: cf<role><pid><random>


@pytest.fixture(scope="session")
def corpus() -> Dict[str, Dict[str, Any]]:
    return {case["id"]: case for case in json.loads(CORPUS.read_text("utf-8"))["cases"]}


def _disable(lane: Lane) -> None:
    """Whatever a failed case left running stops with the lab."""
    lane.agent.run(lane.ext_dir, "disable", lane.seq, timeout=120)


@pytest.fixture(scope="module")
def capture_lab(tmp_path_factory: pytest.TempPathFactory, certificate: TenantCertificate,
                extension_zip: Path) -> Iterator[CaptureLab]:
    """The VM's namespace with eth0 (the only NIC a capture sees), a peer sending traffic."""
    folder = tmp_path_factory.mktemp("capture-lane")
    root = folder / "captures"
    root.mkdir()
    with Topology(PREFIX + "c") as topo:
        vm, peer = topo.namespace("vm"), topo.namespace("peer")
        veth(vm, "eth0", [f"{VM}/24"], peer, "peer0", [f"{PEER}/24"])
        lane = install_lane(folder, certificate, extension_zip, {
            "PACKET_CAPTURE_ROOT": str(root), "PACKET_CAPTURE_NETNS": vm.name})
        try:
            yield CaptureLab(lane, peer, root)
        finally:
            _disable(lane)


@pytest.fixture(scope="module")
def check_lane(tmp_path_factory: pytest.TempPathFactory, certificate: TenantCertificate,
               extension_zip: Path) -> Iterator[Lane]:
    """The handler runs in the client namespace of client - router - server (HTTP 80, HTTPS
    443 on SERVER): the VM of the seeds' examples."""
    folder = tmp_path_factory.mktemp("check-lane")
    with three_namespaces(PREFIX + "k") as path:
        lane = install_lane(folder, certificate, extension_zip, {}, netns=path.client.name)
        try:
            yield lane
        finally:
            _disable(lane)


@pytest.fixture(scope="module")
def snapshot_lab(tmp_path_factory: pytest.TempPathFactory, certificate: TenantCertificate,
                 extension_zip: Path) -> Iterator[SnapshotLab]:
    """A loop-mounted ext4 is the only filesystem frozen (MountsToFreeze); no scripts."""
    folder = tmp_path_factory.mktemp("snapshot-lane")
    conf = folder / "etc-azure"
    conf.mkdir(mode=0o700)
    with LoopFilesystems(folder) as filesystems:
        mount = filesystems.make("ext4").mountpoint
        write_vmbackup_conf(conf, [mount], timeout=30)
        lane = install_lane(folder, certificate, extension_zip, {
            "VMSNAPSHOT_CONF": str(conf / "vmbackup.conf"),
            "VMSNAPSHOT_PLUGIN_CONFIG": str(conf / "no-plugin-config.json"),
            "VMSNAPSHOT_WORKLOAD_CONF": str(conf / "no-workload.conf")})
        try:
            yield SnapshotLab(lane, mount)
        finally:
            _disable(lane)

