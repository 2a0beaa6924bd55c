"""What a streamed capture has sent to storage, kept durably so a restart sends the rest."""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from typing import Optional

from capture_engine.naming import files_of, ring_seq
from plumbing.files import write_atomic

# Commit a growing single file to its blob at least this often, or once this much is new.
COMMIT_SECONDS = 30.0
COMMIT_BYTES = 8 * 1024 * 1024
# Azure takes at most 50,000 committed blocks per blob: blocks are never smaller than the
# file's byte cap over BLOCK_BUDGET, so even a 4 GiB capture stays far below the limit.
MAX_BLOCKS = 50_000
BLOCK_BUDGET = 40_000
# While storage is down, ring files wait on disk; the disk keeps at least this much free:
# max(FLOOR_BYTES, FLOOR_FRACTION of the filesystem). Below it the oldest waiting file goes.
FLOOR_BYTES = 256 * 1024 * 1024
FLOOR_FRACTION = 0.05
RETRY_SECONDS, RETRY_MAX_SECONDS = 2.0, 30.0  # waits after a failed upload, doubling
STREAMS_DIR = ".streams"
# Storage's answer to a block whose id length differs from the blob's staged blocks' ids.
INVALID_BLOCK = "InvalidBlobOrBlock"
# Per-file states shown in the status.
LOCAL, UPLOADING, UPLOADED, DROPPED = "local", "uploading", "uploaded", "dropped"


@dataclass(frozen=True)
class StreamTuning:
    """The thresholds of one streamed session; the handler always uses the defaults (tests
    lower them through run_capture's `stream_tuning`)."""

    commit_seconds: float = COMMIT_SECONDS
    commit_bytes: int = COMMIT_BYTES
    floor_bytes: int = FLOOR_BYTES
    floor_fraction: float = FLOOR_FRACTION
    retry_seconds: float = RETRY_SECONDS
    retry_max_seconds: float = RETRY_MAX_SECONDS

    def floor(self, folder: str) -> int:
        """The free bytes the filesystem of `folder` must keep."""
        stat = os.statvfs(folder)
        return max(self.floor_bytes, int(stat.f_blocks * stat.f_frsize * self.floor_fraction))

    def block_bytes(self, max_file_bytes: int) -> int:
        return max(self.commit_bytes, -(-max_file_bytes // BLOCK_BUDGET))


def block_id(index: int, generation: int = 0) -> str:
    """The id of a single file's `index`-th block, staged by commit `generation`. Every id of
    a blob has this one length: storage refuses a block whose id is longer or shorter than
    its staged blocks' ids."""
    return f"{index:06d}{generation:010d}"


def free_bytes(folder: str) -> int:
    stat = os.statvfs(folder)
    return stat.f_bavail * stat.f_frsize


@dataclass(frozen=True)
class StreamRecord:
    """A streamed capture's progress: a ring has sent every file up to `uploaded_seq` (or
    dropped it, counted); a single file has `committed` bytes in its blob. No SAS in here: a
    restart takes the token from the handler's cached settings."""

    name: str
    base: str                 # the file, or the ring's base name
    ring: bool
    pending_only: bool        # no filePath/localPath: the local copy goes once uploaded
    uploaded_seq: int = 0
    committed: int = 0
    dropped: int = 0
    done: bool = False
    storage: str = ""         # the storagePath it streamed to, without its query (no SAS)
    claimed_ns: int = 0       # its claim of `base` (owners.py): which start of the name

    def pending_files(self) -> list[str]:
        """The local files not in storage yet, oldest first."""
        if self.done:
            return []
        if self.ring:
            return [path for path in files_of(self.base, True)
                    if (ring_seq(path) or 0) > self.uploaded_seq]
        return [self.base] if os.path.exists(self.base) else []


class Journal:
    """The stream records of one capture root, one small JSON file per file name."""

    def __init__(self, capture_root: str) -> None:
        self.folder = os.path.join(capture_root, STREAMS_DIR)

    def _path(self, base: str) -> str:
        key = hashlib.sha256(os.path.abspath(base).encode("utf-8", "surrogateescape"))
        return os.path.join(self.folder, key.hexdigest()[:40] + ".json")

    def save(self, record: StreamRecord) -> None:
        os.makedirs(self.folder, mode=0o750, exist_ok=True)
        write_atomic(self._path(record.base),
                     json.dumps(dataclasses.asdict(record)).encode("utf-8"), mode=0o640)

    def remove(self, record: StreamRecord) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(record.base))

    def records(self, name: str) -> list[StreamRecord]:
        """The unfinished records of capture `name`."""
        try:
            entries = sorted(os.listdir(self.folder))
        except FileNotFoundError:
            return []
        found = [self._read(entry) for entry in entries if entry.endswith(".json")]
        return [r for r in found if r is not None and r.name == name and not r.done]

    def _read(self, entry: str) -> Optional[StreamRecord]:
        try:
            with open(os.path.join(self.folder, entry), encoding="utf-8") as source:
                return _record_from(json.load(source))
        except (OSError, ValueError):
            return None  # not a record (records are renamed into place whole)


def _record_from(data: object) -> Optional[StreamRecord]:
    """A record from its JSON, or None when any field is missing or of another type (a file
    no capture wrote: acting on it could send or cut any file)."""
    if not isinstance(data, dict):
        return None
    values: dict[str, object] = {}
    for field in dataclasses.fields(StreamRecord):
        value = data.get(field.name, field.default)
        kind = _FIELD_TYPES[field.name]
        if type(value) is not kind or (kind is int and value < 0):  # type: ignore[operator]
            return None
        values[field.name] = value
    if not os.path.isabs(str(values["base"])):
        return None
    return StreamRecord(**values)  # type: ignore[arg-type]


_FIELD_TYPES: dict[str, type] = {
    "name": str, "base": str, "ring": bool, "pending_only": bool, "uploaded_seq": int,
    "committed": int, "dropped": int, "done": bool, "storage": str, "claimed_ns": int}
