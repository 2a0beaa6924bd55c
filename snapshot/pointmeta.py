"""What each disk snapshot records about its recovery point, and the outcome record for a run
whose final consistency is not the one its snapshots recorded.

A snapshot's metadata is fixed when the snapshot is taken, so `vmsnapshotConsistency` says what
was true at that moment, decided per snapshot call: fileSystemConsistent (or
applicationConsistent when pre-scripts succeeded) inside a freeze that held, crashConsistent for
a snapshot taken without one (nothing to freeze, or the fallback after a failed freeze). It
cannot know what happens after it: post-scripts failing (the spec then says FileSystemConsistent
or failed), the freeze found timed out at thaw, another disk failing, a signal. When the run's
final consistency differs from the weakest its snapshots recorded, one more snapshot of the
first disk that was snapshotted records it: metadata `vmsnapshotTaskId` + `vmsnapshotOutcome`
(nothing else, so no backup tool takes it for a disk snapshot). The recovery point listing
(`snapshot.restore`) takes the task's consistency from that record when there is one and never
lists it as a disk. If storage refuses that record, the run still reports the truth in its
status; only the listing keeps the snapshots' own claim (logged as a warning).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

from plumbing.blobstore import BlobError
from snapshot.disks import SnapshotStore, merge_metadata
from snapshot.log import BufferedLog
from snapshot.result import Consistency
from snapshot.selection import DiskTarget

META_TASK, META_TIME, META_CONSISTENCY = "vmsnapshotTaskId", "vmsnapshotTime", \
    "vmsnapshotConsistency"
META_LUN = "vmsnapshotLun"  # -1 the OS disk, else the data disk's LUN (with includedDisks)
META_OUTCOME = "vmsnapshotOutcome"  # on the outcome record only: the run's final consistency
_STRENGTH = (Consistency.NONE, Consistency.CRASH, Consistency.FILE_SYSTEM,
             Consistency.APPLICATION)


def weakest(consistencies: Iterable[Consistency]) -> Consistency:
    """The weakest of several claims (APPLICATION when there are none)."""
    return min(consistencies, key=_STRENGTH.index, default=Consistency.APPLICATION)


def snapshot_metadata(task_id: str, time: str, backup_metadata: Iterable[tuple[str, str]],
                      targets: Sequence[DiskTarget], own: Sequence[dict[str, str]],
                      consistency: Consistency) -> list[dict[str, str]]:
    """Each snapshot keeps its blob's own metadata, then backupMetadata, then ours, on top."""
    ours = {META_TASK: task_id, META_TIME: time, META_CONSISTENCY: consistency.value}
    backup = dict(backup_metadata)
    return [merge_metadata(mine, backup, ours, {META_LUN: t.lun_label} if t.lun_label else {})
            for t, mine in zip(targets, own)]


def record_outcome(store: SnapshotStore, task_id: str, snapped: Sequence[str],
                   recorded: Consistency, final: Consistency, log: BufferedLog) -> None:
    """The outcome record (on the first of the disk URIs that have a snapshot of this run),
    when the final consistency is not the weakest the snapshots recorded."""
    if not snapped or final == recorded:
        return
    try:
        store.create_snapshot(snapped[0], {META_TASK: task_id, META_OUTCOME: final.value})
    except BlobError as exc:
        log.warning(f"the snapshots say {recorded.value}, the run ended {final.value}; the "
                    f"outcome record could not be written ({exc}): a recovery point listing "
                    "shows the snapshots' claim")
        return
    log.info(f"the snapshots say {recorded.value}, the run ended {final.value}: outcome "
             "recorded for the recovery point listing")
