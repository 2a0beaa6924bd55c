"""Fixtures: this hunt's own pair of namespaces (prefix h11b) joined by a veth pair."""
from __future__ import annotations

import os

import pytest

from devtools.netns import Topology, veth


@pytest.fixture(scope="module")
def h11b_lab():
    if os.geteuid() != 0:
        pytest.skip("needs root")
    with Topology("h11b") as topo:
        vm, peer = topo.namespace("vm"), topo.namespace("peer")
        veth(vm, "cap0", ["10.199.71.1/24"], peer, "peer0", ["10.199.71.2/24"])
        yield vm, peer
