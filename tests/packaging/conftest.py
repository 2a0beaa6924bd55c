"""Fixtures: the package built once per session, installed the way the guest agent installs it."""
from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from devtools.zipbuild import build_zip, install_zip


@pytest.fixture(scope="session")
def package_zip() -> Path:
    return build_zip()


@pytest.fixture(scope="session")
def zip_names(package_zip: Path) -> list:
    with zipfile.ZipFile(package_zip) as package:
        return package.namelist()


@pytest.fixture(scope="session")
def installed(package_zip: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only-by-convention install shared by tests that do not modify it."""
    return install_zip(package_zip, tmp_path_factory.mktemp("waagent"))


@pytest.fixture()
def fresh_install(package_zip: Path, tmp_path: Path) -> Path:
    """A private install that a test may damage."""
    return install_zip(package_zip, tmp_path / "lib")
