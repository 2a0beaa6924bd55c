"""A Runtime on a temporary extension folder, for tests that build statuses without the agent."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

from handler.environment import HandlerEnvironment
from handler.events import EventWriter
from handler.operations.registry import build_registry
from handler.runtime import MemoryLog, Runtime
from plumbing.blobstore import BlobStore
from plumbing.clock import Clock
from plumbing.redact import Redactor


def local_runtime(tmp_path: Path, clock: Optional[Clock] = None) -> Runtime:
    ext = tmp_path / "ext"
    folders = {name: ext / name for name in ("log", "config", "status")}
    for folder in folders.values():
        folder.mkdir(parents=True)
    env = HandlerEnvironment("Contoso.X", ext, tmp_path, folders["log"], folders["config"],
                             folders["status"], None, None)
    redactor = Redactor()
    extra = {"clock": clock} if clock is not None else {}
    return Runtime(env, build_registry({}), redactor, BlobStore(),
                   logging.getLogger("test-runtime"), EventWriter(None, "1.0", redactor),
                   MemoryLog(logging.Formatter()), **extra)
