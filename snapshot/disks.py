"""Snapshot every disk blob with bounded parallelism; map storage answers to spec codes."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from plumbing.blobstore import BlobError, BlobErrorKind, BlobStore
from plumbing.redact import strip_query
from snapshot.errors import Code

_KIND_CODES = {
    BlobErrorKind.THROTTLED: Code.THROTTLED,
    BlobErrorKind.SNAPSHOT_LIMIT: Code.SNAPSHOT_COUNT_LIMIT,
    BlobErrorKind.UNREACHABLE: Code.NO_NETWORK,
}
# A code that says more than "error" wins when disks fail differently.
_CODE_PRIORITY = (Code.SNAPSHOT_COUNT_LIMIT, Code.THROTTLED, Code.NO_NETWORK)


@dataclass(frozen=True)
class DiskSnapshot:
    """The outcome for one disk: its snapshot URI (no SAS) or why there is none."""

    blob_uri: str
    is_successful: bool
    snapshot_time: str = ""
    error_message: str = ""
    code: int = 0

    @property
    def snapshot_uri(self) -> str:
        return f"{self.blob_uri}?snapshot={self.snapshot_time}" if self.snapshot_time else ""

    def info(self) -> dict[str, object]:
        """The status blob's snapshotInfo entry."""
        return {"isSuccessful": self.is_successful, "snapshotUri": self.snapshot_uri,
                "blobUri": self.blob_uri, "errorMessage": self.error_message}


def code_for(error: BlobError) -> int:
    return _KIND_CODES.get(error.kind, Code.ERROR)


def snapshot_disks(store: BlobStore, uris: Sequence[str], metadata: Mapping[str, str],
                   parallelism: int = 4) -> list[DiskSnapshot]:
    """One DiskSnapshot per URI, in input order; never raises for storage failures."""
    def one(uri: str) -> DiskSnapshot:
        try:
            when = store.create_snapshot(uri, metadata)
        except BlobError as exc:
            return DiskSnapshot(strip_query(uri), False, error_message=str(exc),
                                code=code_for(exc))
        return DiskSnapshot(strip_query(uri), True, snapshot_time=when)

    workers = max(1, min(parallelism, len(uris)))
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="disk-snapshot")
    try:
        return list(pool.map(one, uris))
    finally:
        # On a signal, do not wait for hanging requests: the caller must thaw now.
        pool.shutdown(wait=False, cancel_futures=True)


def failure_code(results: Sequence[DiskSnapshot]) -> int:
    """The most specific code among failed disks (0 when none failed)."""
    codes = {r.code for r in results if not r.is_successful}
    if not codes:
        return 0
    for code in _CODE_PRIORITY:
        if code in codes:
            return code
    return Code.ERROR
