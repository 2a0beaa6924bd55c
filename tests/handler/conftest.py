"""Fixtures for driving the packaged handler through the fake agent."""
from __future__ import annotations

from pathlib import Path

import pytest

from devtools.fabric import TenantCertificate
from devtools.fakeagent import FakeAgent


@pytest.fixture(scope="session")
def extension_zip() -> Path:
    from devtools.zipbuild import build_zip

    return build_zip()


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> TenantCertificate:
    return TenantCertificate.create(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def agent(tmp_path: Path, certificate: TenantCertificate) -> FakeAgent:
    lib_dir = tmp_path / "waagent"
    lib_dir.mkdir()
    for source in (certificate.crt, certificate.prv):
        (lib_dir / source.name).write_bytes(source.read_bytes())
    return FakeAgent(lib_dir=lib_dir, log_root=tmp_path / "log", certificate=TenantCertificate(
        certificate.thumbprint, lib_dir / certificate.crt.name, lib_dir / certificate.prv.name))


@pytest.fixture
def ext_dir(agent: FakeAgent, extension_zip: Path) -> Path:
    """A freshly unpacked and installed extension (install already run)."""
    path = agent.fresh_install(extension_zip, "1.0.0")
    result = agent.run(path, "install")
    assert result.returncode == 0, f"install failed: {result.output}"
    return path
