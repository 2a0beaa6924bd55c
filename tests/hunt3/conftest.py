"""Fixtures shared by the third hostile review's repros (the handler's own, re-exported)."""
# ruff: noqa: F401 - fixtures imported so pytest finds them here
from __future__ import annotations

from tests.handler.conftest import agent, certificate, ext_dir, extension_zip
from tests.snapshot.conftest import confdir, loopfs
