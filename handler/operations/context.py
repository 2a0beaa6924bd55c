"""What an operation may use from the handler: the seam that replaces back-calls to Runtime."""
from __future__ import annotations

import logging
from typing import Any, Mapping, Optional, Protocol

from handler.environment import HandlerEnvironment
from handler.settings import HandlerSettings
from handler.state import JobRecord, OperationRecord, StateStore
from handler.status import Substatus
from plumbing.blobstore import BlobStore
from plumbing.clock import Clock
from plumbing.redact import Redactor


class OperationContext(Protocol):
    """The handler's services as an operation sees them; handler.runtime.Runtime provides
    them. Read-only here: an operation never rebinds the handler's collaborators."""

    @property
    def env(self) -> HandlerEnvironment: ...

    @property
    def environ(self) -> Mapping[str, str]: ...

    @property
    def store(self) -> StateStore: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def log(self) -> logging.Logger: ...

    @property
    def redactor(self) -> Redactor: ...

    @property
    def blob_store(self) -> BlobStore: ...

    def status_changed(self) -> None:
        """A worker's status changed: its blob is sent in the background (never waited for)."""

    def cached_settings(self, seq: int) -> Optional[HandlerSettings[Any]]:
        """The settings of `seq` as parsed then, or None when they no longer parse."""

    def start_job(self, seq: int, command: str, name: str, job_id: str = "") -> JobRecord:
        """Record a job, then start its detached worker. The caller holds the state lock."""

    def reap_dead_workers(self) -> None:
        """Mark the jobs whose worker is gone as died. The caller holds the state lock."""

    def conclude(self, record: OperationRecord) -> OperationRecord:
        """A transitioning record whose jobs have all finished takes their outcome."""

    def job_substatus(self, job_ids: list[str]) -> list[Substatus]:
        """One substatus per job, from its record."""

    def refresh_local(self, seq: Optional[int] = None) -> Optional[OperationRecord]:
        """Re-render the local status file of `seq` (default: the latest). Lock held."""
