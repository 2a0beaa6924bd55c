"""Fixtures: one client - router - server topology for the session, state reset per test."""
from __future__ import annotations

import pytest

from devtools.pathlab import SERVER, Path3, hostile_lab, three_namespaces


@pytest.fixture(scope="session")
def path3_session():
    with three_namespaces("cc") as path:
        yield path


@pytest.fixture
def net(path3_session: Path3):
    """The topology with an empty client ruleset and resolv.conf pointing at dnsmasq."""
    yield path3_session
    path3_session.client.run(["nft", "flush", "ruleset"], timeout=10)
    path3_session.resolv(SERVER)


@pytest.fixture(scope="session")
def hostile_session(path3_session: Path3):
    with hostile_lab(path3_session) as path:
        yield path


@pytest.fixture
def hostile(hostile_session: Path3, net: Path3):
    """The topology plus devtools/hostile_servers.py running in the server namespace."""
    yield hostile_session
