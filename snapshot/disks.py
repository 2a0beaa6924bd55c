"""Snapshot every disk blob with bounded parallelism; map storage answers to spec codes."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Optional, Protocol, Union

from plumbing.blobstore import BlobError, BlobErrorKind
from plumbing.redact import strip_query
from snapshot.errors import Code, SnapshotError
from snapshot.log import BufferedLog
from snapshot.selection import DiskTarget

# Storage answers → the table: retryable ones (no answer, timeout, 5xx after our retries) are
# 76 as in the original; an HTTP refusal (403, 404, other 4xx) is 15, retrying cannot help.
_KIND_CODES = {
    BlobErrorKind.THROTTLED: Code.THROTTLED,
    BlobErrorKind.SNAPSHOT_LIMIT: Code.SNAPSHOT_COUNT_LIMIT,
    BlobErrorKind.UNREACHABLE: Code.NO_NETWORK,
    BlobErrorKind.TIMEOUT: Code.NO_NETWORK,
    BlobErrorKind.FAILED: Code.NO_NETWORK,
    BlobErrorKind.FORBIDDEN: Code.HTTP_FAILURE,
    BlobErrorKind.EXPIRED: Code.HTTP_FAILURE,
    BlobErrorKind.NOT_FOUND: Code.HTTP_FAILURE,
    BlobErrorKind.REJECTED: Code.HTTP_FAILURE,
    BlobErrorKind.INVALID_URI: Code.HTTP_FAILURE,
}
# The most specific code wins when disks fail differently.
_CODE_PRIORITY = (Code.SNAPSHOT_COUNT_LIMIT, Code.THROTTLED, Code.NO_NETWORK, Code.HTTP_FAILURE)
Metadata = Union[Mapping[str, str], Sequence[Mapping[str, str]]]


class SnapshotStore(Protocol):
    """The part of a blob store a snapshot run needs (plumbing.blobstore.BlobStore is one)."""

    def properties(self, uri: str) -> dict[str, object]: ...

    def create_snapshot(self, uri: str,
                        metadata: Optional[Mapping[str, str]] = None) -> str: ...


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


def preflight(store: SnapshotStore, targets: Sequence[DiskTarget],
              log: BufferedLog) -> list[dict[str, str]]:
    """Check every disk blob answers before anything is quiesced (also warms the HTTP stack);
    return each blob's own metadata, which its snapshot keeps."""
    found = []
    for target in targets:
        try:
            properties = store.properties(target.uri)
        except BlobError as exc:
            raise SnapshotError(f"disk blob {target.index} is not usable: {exc}",
                                code_for(exc)) from None
        metadata = properties.get("metadata")  # a dict; properties() types values as object
        own = metadata if isinstance(metadata, Mapping) else {}
        found.append({str(k): str(v) for k, v in own.items()})
    log.info(f"all {len(targets)} disk blob(s) answer")
    return found


def merge_metadata(*layers: Mapping[str, str]) -> dict[str, str]:
    """Later layers win; keys compare case-insensitively, as storage metadata names do."""
    merged: dict[str, str] = {}
    for layer in layers:
        for key, value in layer.items():
            for old in [k for k in merged if k.lower() == key.lower()]:
                del merged[old]
            merged[key] = value
    return merged


def snapshot_disks(store: SnapshotStore, uris: Sequence[str], metadata: Metadata,
                   parallelism: int = 4) -> list[DiskSnapshot]:
    """One DiskSnapshot per URI, in input order; never raises for storage failures.

    `metadata` is one mapping for every snapshot, or one mapping per URI.
    """
    per_disk = [metadata] * len(uris) if isinstance(metadata, Mapping) else list(metadata)

    def one(index: int) -> DiskSnapshot:
        uri = uris[index]
        try:
            when = store.create_snapshot(uri, per_disk[index])
        except BlobError as exc:
            return DiskSnapshot(strip_query(uri), False, error_message=str(exc),
                                code=code_for(exc))
        return DiskSnapshot(strip_query(uri), True, snapshot_time=when)

    workers = max(1, min(parallelism, len(uris)))
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="disk-snapshot")
    try:
        return list(pool.map(one, range(len(uris))))
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
