"""Shared fixtures: Azurite, namespaces; in CI, every test that needs root must run."""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from devtools.azurite import Azurite  # noqa: E402

IN_CI = bool(os.environ.get("CI"))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "root: needs root (namespaces, raw sockets, loop, freeze)")
    if IN_CI and os.geteuid() != 0:
        raise pytest.UsageError("CI runs the suite as root: tests that need root may not skip")


def pytest_collection_modifyitems(config: pytest.Config, items: list) -> None:
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root (run the suite with sudo)")
    for item in items:
        if "root" in item.keywords:
            item.add_marker(skip)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI a skipped test is a failure: nothing here may quietly not run."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if IN_CI and skipped and exitstatus == 0:
        reporter.write_line(f"CI: {skipped} test(s) skipped; skipping is not allowed in CI",
                            red=True)
        session.exitstatus = 1


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory):
    """A real Azurite blob service on 127.0.0.1 for the whole test session."""
    location = tmp_path_factory.mktemp("azurite")
    try:
        with Azurite(location=str(location)) as service:
            yield service
    finally:  # its blobs (captures, disk images) are kept even when a test failed otherwise
        shutil.rmtree(location, ignore_errors=True)
