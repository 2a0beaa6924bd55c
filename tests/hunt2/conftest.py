"""Fixtures shared by the second hostile review's repros (the handler's own, re-exported)."""
# ruff: noqa: F401 - fixtures imported so pytest finds them here
from __future__ import annotations

from tests.handler.conftest import agent, certificate, ext_dir, extension_zip
from tests.hunt.conftest import *  # noqa: F403
from tests.snapshot.conftest import confdir, loopfs, writer_factory
from tests.snapshot.test_freeze_faults import throttle
