"""On-disk bookkeeping under a file lock: mrseq, one record per operation and per worker job."""
from __future__ import annotations

import json
import os
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, TypeVar

from handler.errors import StateLockedError
from plumbing.files import LockTimeout, locked, write_atomic

TERMINAL = ("success", "error")
# How long a lifecycle command waits for the state lock; held only for local reads and writes,
# it is normally free within milliseconds.
LOCK_WAIT_SECONDS = 20.0


@dataclass
class OperationRecord:
    """What enable decided for one sequence number, and how it ended."""

    seq: int
    command: str
    status: str
    code: int
    message: str
    jobs: list[str] = field(default_factory=list)
    substatus_name: str = ""
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


@dataclass
class JobRecord:
    """A detached worker: who it is, whether it lives, and what it last reported."""

    job_id: str
    command: str
    seq: int
    name: str
    state: str = "starting"  # starting | running | finished | died
    pid: int = 0  # 0 until the spawner or the worker itself records it
    start_ticks: int = 0  # the worker's start time after boot: its identity with the pid
    spawner_pid: int = 0  # the enable that wrote this record, while the worker is starting
    spawner_ticks: int = 0
    status: str = "transitioning"
    code: int = 0
    message: str = ""
    detail: dict[str, Any] = field(default_factory=dict)
    started: str = ""
    updated: str = ""
    stop_requested_by: int = -1  # the sequence number whose stop was sent to this worker
    deleted_by: int = -1  # the sequence number whose delete removed this session
    settings_digest: str = ""  # the settings file enable accepted (see RawSettings.digest)

    @property
    def finished(self) -> bool:
        return self.state in ("finished", "died")


class StateStore:
    """Records in <ext>/state; every read-modify-write happens under `lock()`."""

    def __init__(self, state_dir: Path, mrseq_file: Path,
                 redact: Callable[[str], str] = lambda text: text,
                 lock_wait: float = LOCK_WAIT_SECONDS) -> None:
        self.lock_wait = lock_wait
        self.unsaved: list[str] = []  # records the disk refused, kept in memory (see _write)
        self._overlay: dict[Path, str] = {}
        self.root = state_dir
        self._redact = redact  # records hold messages: nothing secret may reach the disk
        self.mrseq_file = mrseq_file
        for sub in ("ops", "jobs"):
            (state_dir / sub).mkdir(parents=True, exist_ok=True, mode=0o700)

    @contextmanager
    def lock(self) -> Iterator[None]:
        """The state lock, waited for at most `lock_wait` seconds: a holder that is stopped
        (SIGSTOP) or stuck must not hold every later command until the agent kills it.

        The lock is on the state folder itself, which needs no file to be created: a full
        disk still leaves the handler able to lock, read and report. Its holder's pid is noted
        in handler.lock when the disk allows."""
        held = ExitStack()
        try:
            held.enter_context(locked(self.root, wait=self.lock_wait))
        except LockTimeout:
            raise StateLockedError(
                f"the handler's state has been locked by another of its processes "
                f"(pid {self._holder()}) for {self.lock_wait:.0f}s; not waiting longer") from None
        with held:
            self._note_holder()
            yield

    def _note_holder(self) -> None:
        try:
            (self.root / "handler.lock").write_text(str(os.getpid()))
        except OSError:
            pass  # a full disk: the lock holds all the same, only its holder goes unnamed

    def _holder(self) -> str:
        try:
            text = (self.root / "handler.lock").read_text()[:16].strip()
        except OSError:
            text = ""
        return text if text.isdigit() else "?"

    # -- mrseq --------------------------------------------------------------------------
    def last_seq(self) -> Optional[int]:
        try:
            text = self.mrseq_file.read_text().strip()
        except FileNotFoundError:
            return None
        return int(text) if text.isascii() and text.lstrip("-").isdigit() else None

    def set_last_seq(self, seq: int) -> None:
        try:
            write_atomic(self.mrseq_file, str(seq).encode(), mode=0o644)
        except OSError as exc:
            self.unsaved.append(f"{self.mrseq_file.name}: {exc.strerror or exc}")

    # -- records ------------------------------------------------------------------------
    def operation(self, seq: int) -> Optional[OperationRecord]:
        return _load(OperationRecord, self._read(self.root / "ops" / f"{seq}.json"))

    def operations(self) -> list[OperationRecord]:
        records = []
        for path in self._paths("ops"):
            record = _load(OperationRecord, self._read(path))
            if record is not None:
                records.append(record)
        return records

    def save_operation(self, record: OperationRecord) -> None:
        self._write(self.root / "ops" / f"{record.seq}.json", asdict(record))

    def job(self, job_id: str) -> Optional[JobRecord]:
        return _load(JobRecord, self._read(self.root / "jobs" / f"{job_id}.json"))

    def save_job(self, record: JobRecord) -> None:
        self._write(self.root / "jobs" / f"{record.job_id}.json", asdict(record))

    def update_job(self, job_id: str, **changes: Any) -> JobRecord:
        current = self.job(job_id)
        if current is None:
            raise KeyError(job_id)
        updated = replace(current, **changes)
        self.save_job(updated)
        return updated

    def jobs(self) -> list[JobRecord]:
        records = []
        for path in self._paths("jobs"):
            record = _load(JobRecord, self._read(path))
            if record is not None:
                records.append(record)
        return records

    def prune(self, keep_jobs: int, keep_operations: int) -> list[str]:
        """Forget the oldest finished jobs and operations beyond the newest `keep_*`;
        returns the job ids removed (their logs go too)."""
        finished = sorted((j for j in self.jobs() if j.finished),
                          key=lambda j: (j.updated, j.job_id))
        removed = [j.job_id for j in finished[:max(0, len(finished) - keep_jobs)]]
        for job_id in removed:
            self.delete_job(job_id)
        seqs = sorted(int(p.stem) for p in (self.root / "ops").glob("*.json")
                      if p.stem.isascii() and p.stem.isdigit())
        for seq in seqs[:max(0, len(seqs) - keep_operations)]:
            if seq != self.last_seq():
                (self.root / "ops" / f"{seq}.json").unlink(missing_ok=True)
        return removed

    def delete_job(self, job_id: str) -> None:
        path = self.root / "jobs" / f"{job_id}.json"
        self._overlay.pop(path, None)
        path.unlink(missing_ok=True)

    def _paths(self, kind: str) -> list[Path]:
        on_disk = set((self.root / kind).glob("*.json"))
        return sorted(on_disk | {p for p in self._overlay if p.parent.name == kind})

    def _read(self, path: Path) -> Optional[dict[str, Any]]:
        data: Optional[dict[str, Any]]  # a JSON object, as _write wrote it
        if path in self._overlay:
            data = json.loads(self._overlay[path])
            return data
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except ValueError:
            return None  # a torn record cannot happen (atomic writes); treat junk as absent
        return data

    def _write(self, path: Path, data: dict[str, Any]) -> None:
        """Write a record; when the disk refuses (full, read-only), keep it in this process's
        memory and note it in `unsaved`: the process goes on with the truth it knows, so its
        status and status blob still say what happened, and its caller decides whether to act."""
        text = self._redact(json.dumps(data, indent=1, sort_keys=True))
        try:
            write_atomic(path, text.encode("utf-8"))
            self._overlay.pop(path, None)
        except OSError as exc:
            self._overlay[path] = text
            self.unsaved.append(f"{path.parent.name}/{path.name}: {exc.strerror or exc}")


Record = TypeVar("Record", OperationRecord, JobRecord)


def _load(kind: type[Record], data: Optional[dict[str, Any]]) -> Optional[Record]:
    """A record from its JSON; keys of another version are ignored, missing ones default."""
    if not data:
        return None
    known = {f.name for f in fields(kind)}
    try:
        return kind(**{k: v for k, v in data.items() if k in known})
    except TypeError:
        return None  # a required key is missing: junk, like a torn file
