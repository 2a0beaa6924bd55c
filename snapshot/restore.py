"""Recovery points (our snapshots, grouped by task) and RestoreDisks into a target container."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Callable, Iterator, Optional, TypedDict, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

from plumbing.blobstore import BlobError, BlobStore
from plumbing.clock import Clock, SystemClock
from plumbing.redact import strip_query
from snapshot.errors import RestoreError
from snapshot.pointmeta import META_CONSISTENCY, META_OUTCOME, META_TASK, META_TIME, weakest
from snapshot.result import Consistency

Progress = Callable[[str, int, int], None]
COPY_TIMEOUT = 600.0
T = TypeVar("T")


@dataclass(frozen=True)
class DiskPoint:
    disk: str
    snapshot: str
    size: int


@dataclass(frozen=True)
class RecoveryPoint:
    """All disk snapshots one task made, with the time and consistency they recorded."""

    task_id: str
    time: str
    consistency: Consistency
    disks: tuple[DiskPoint, ...]

    def as_dict(self) -> dict[str, object]:
        return {"taskId": self.task_id, "time": self.time,
                "consistency": self.consistency.value,
                "recoveryPointType": self.consistency.recovery_point_type,
                "disks": [{"disk": d.disk, "snapshot": d.snapshot, "size": d.size}
                          for d in self.disks]}


class RestoredDisk(TypedDict):
    """One disk of a RestoreDisks outcome (keys as in vmconfig.json)."""

    disk: str
    snapshot: str
    restoredBlob: str
    size: int
    sha256: str


class VmConfig(TypedDict):
    """vmconfig.json, written next to the restored disks."""

    restoreType: str
    taskId: str
    time: str
    recoveryPointType: str
    sourceContainer: str
    disks: list[RestoredDisk]


class RestoreOutcome(VmConfig):
    """What restore_disks returns: vmconfig.json's content and where it was written."""

    vmconfig: str


def _meta(metadata: Optional[dict[str, str]], key: str) -> str:
    lowered = {k.lower(): v for k, v in (metadata or {}).items()}
    return lowered.get(key.lower(), "")


def list_recovery_points(container_sas_uri: str, prefix: str = "",
                         store: Optional[BlobStore] = None) -> list[RecoveryPoint]:
    """Every recovery point in a container (needs a container SAS with list permission). Its
    consistency is the run's outcome record when there is one (`snapshot.pointmeta`), else the
    weakest its snapshots claim."""
    groups: dict[str, list[tuple[str, DiskPoint, str]]] = {}
    outcomes: dict[str, str] = {}
    store = store or BlobStore()
    for blob in _guard(lambda: store.list_blobs(container_sas_uri, prefix)):
        task = _meta(blob.metadata, META_TASK)
        if not blob.snapshot or not task:
            continue
        if _meta(blob.metadata, META_OUTCOME):  # the run's final word, not a disk
            outcomes[task] = _meta(blob.metadata, META_OUTCOME)
            continue
        point = DiskPoint(blob.name, blob.snapshot, blob.size)
        groups.setdefault(task, []).append((_meta(blob.metadata, META_TIME), point,
                                            _meta(blob.metadata, META_CONSISTENCY)))
    points = []
    for task, entries in groups.items():
        names = {outcomes[task]} if task in outcomes else {c for _t, _p, c in entries}
        points.append(RecoveryPoint(task, min(t for t, _p, _c in entries), _consistency(names),
                                    tuple(sorted((p for _t, p, _c in entries),
                                                 key=lambda d: d.disk))))
    return sorted(points, key=lambda p: p.time)


def _consistency(names: set[str]) -> Consistency:
    """The weakest of the claims; a claim we do not know counts as none."""
    known = {c.value: c for c in Consistency}
    return weakest(known.get(name, Consistency.NONE) for name in names)


def restore_disks(container_sas_uri: str, task_id: str, target_container_sas_uri: str,
                  progress: Optional[Progress] = None,
                  store: Optional[BlobStore] = None,
                  clock: Optional[Clock] = None) -> RestoreOutcome:
    """Copy each disk snapshot of the task to `<task>/<disk>` in the target; verify bytes."""
    store = store or BlobStore()
    clock = clock or SystemClock()
    points = [p for p in list_recovery_points(container_sas_uri, store=store)
              if p.task_id == task_id]
    if not points:
        raise RestoreError(f"no recovery point for task {task_id!r} in "
                           f"{strip_query(container_sas_uri)}")
    point = points[0]
    restored: list[RestoredDisk] = []
    for disk in point.disks:
        source = _blob_url(container_sas_uri, disk.disk, snapshot=disk.snapshot)
        target = _blob_url(target_container_sas_uri, f"{task_id}/{disk.disk}")
        _copy(store, source, target, disk.disk, clock)
        digest = _verify(store, source, target, disk, progress)
        restored.append({"disk": disk.disk, "snapshot": disk.snapshot,
                         "restoredBlob": strip_query(target), "size": disk.size,
                         "sha256": digest})
    config: VmConfig = {"restoreType": "RestoreDisks", "taskId": task_id, "time": point.time,
                        "recoveryPointType": point.consistency.recovery_point_type,
                        "sourceContainer": strip_query(container_sas_uri), "disks": restored}
    config_url = _blob_url(target_container_sas_uri, f"{task_id}/vmconfig.json")
    _guard(lambda: store.put_bytes(config_url, json.dumps(config, indent=2).encode(),
                                   "application/json"))
    return {**config, "vmconfig": strip_query(config_url)}


def _copy(store: BlobStore, source: str, target: str, name: str, clock: Clock) -> None:
    _guard(lambda: store.start_copy(target, source))
    deadline = clock.monotonic() + COPY_TIMEOUT
    while True:
        status = _guard(lambda: store.copy_status(target))
        if status == "success":
            return
        if status in ("failed", "aborted"):
            raise RestoreError(f"copy of {name} ended as {status}")
        if clock.monotonic() > deadline:
            raise RestoreError(f"copy of {name} ended as timeout ({status or 'no status'} "
                               f"after {COPY_TIMEOUT:.0f} s)")
        clock.sleep(0.5)


def _verify(store: BlobStore, source: str, target: str, disk: DiskPoint,
            progress: Optional[Progress]) -> str:
    """Compare the restored blob with its snapshot chunk by chunk; return the sha256."""
    digests = []
    for offset, url in ((0, source), (disk.size, target)):
        sha, done = hashlib.sha256(), offset
        for chunk in _guarded_chunks(store, url):
            sha.update(chunk)
            done += len(chunk)
            if progress is not None:
                progress(disk.disk, done, 2 * disk.size)
        digests.append(sha.hexdigest())
    if digests[0] != digests[1]:
        raise RestoreError(f"restored {disk.disk} differs from snapshot {disk.snapshot}")
    return digests[0]


def _guarded_chunks(store: BlobStore, url: str) -> Iterator[bytes]:
    try:
        yield from store.chunks(url)
    except BlobError as exc:
        raise RestoreError(str(exc)) from None


def _blob_url(container_sas_uri: str, blob: str, snapshot: str = "") -> str:
    parts = urlsplit(container_sas_uri)
    query = parts.query + (("&" if parts.query else "") + f"snapshot={quote(snapshot)}"
                           if snapshot else "")
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/") + "/" + quote(blob),
                       query, ""))


def _guard(operation: Callable[[], T]) -> T:
    """A blob call whose failure (already redacted, its URL without the query) is the
    restore's."""
    try:
        return operation()
    except BlobError as exc:
        raise RestoreError(str(exc)) from None
