"""Blob I/O over SAS URIs (azure-storage-blob) with one retry policy and coded errors."""
from __future__ import annotations

import copy
import dataclasses
import enum
import io
import os
import threading
import time
from datetime import datetime, timezone
from typing import (
    TYPE_CHECKING,
    Callable,
    Iterator,
    Mapping,
    Optional,
    Protocol,
    Sequence,
    TypeVar,
)
from urllib.parse import parse_qs, urlsplit

from plumbing.redact import Redactor, redact_patterns, strip_query
from plumbing.retry import RetryPolicy

if TYPE_CHECKING:
    from azure.storage.blob import BlobClient

ProgressHook = Callable[[int, Optional[int]], None]


T = TypeVar("T")
WALL_MARGIN = 1.0  # seconds a request may run past its timeout before it is abandoned
# A file upload may take as long as it needs while it progresses; with no chunk acknowledged
# for STALL_FACTOR x the request timeout it is abandoned (storage that trickles its answers).
STALL_FACTOR = 3.0


class WallTimeout(Exception):
    """A request did not complete within its wall-clock bound."""


@dataclasses.dataclass(frozen=True)
class BlobEntry:
    """One blob (or blob snapshot) of a container listing."""

    name: str
    snapshot: str  # "" for the base blob
    size: int
    metadata: dict[str, str]


def _http_uri(uri: str) -> str:
    """`uri` if it is an http(s) URL with a host; raise BlobError(INVALID_URI) otherwise."""
    parts = urlsplit(uri.strip()) if isinstance(uri, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise BlobError(BlobErrorKind.INVALID_URI, "not an http(s) storage URL (the value is "
                        "not shown: it may be a secret)")
    return uri.strip()


class _Stamped(io.BytesIO):
    """A request body that stamps the time of each read as it goes out (stall detection)."""

    def __init__(self, data: bytes, progressed: list[float]) -> None:
        super().__init__(data)
        self._progressed = progressed

    def read(self, size: Optional[int] = -1) -> bytes:
        self._progressed[0] = time.monotonic()
        return super().read(size)


class BlobErrorKind(str, enum.Enum):
    INVALID_URI = "InvalidUri"
    FORBIDDEN = "Forbidden"
    EXPIRED = "SasExpired"
    NOT_FOUND = "NotFound"
    UNREACHABLE = "Unreachable"
    TIMEOUT = "Timeout"
    THROTTLED = "Throttled"
    SNAPSHOT_LIMIT = "SnapshotCountExceeded"
    FAILED = "Failed"
    REJECTED = "Rejected"  # any other 4xx: the request itself is wrong; not retried


RETRYABLE = {BlobErrorKind.UNREACHABLE, BlobErrorKind.TIMEOUT, BlobErrorKind.THROTTLED,
             BlobErrorKind.FAILED}


class BlobError(Exception):
    """A blob operation failed; the message never contains the SAS signature."""

    def __init__(self, kind: BlobErrorKind, message: str, status: Optional[int] = None,
                 error_code: Optional[str] = None, attempts: int = 1) -> None:
        super().__init__(redact_patterns(message))
        self.kind = kind
        self.status = status
        self.error_code = error_code
        self.attempts = attempts


DEFAULT_POLICY = RetryPolicy(
    attempts=4, base_delay=0.5, max_delay=8.0, jitter=0.25,
    retry_on=lambda exc: isinstance(exc, BlobError) and exc.kind in RETRYABLE,
)


def validate_blob_uri(uri: str) -> str:
    """Return uri if it names a blob over http(s); raise BlobError(INVALID_URI) otherwise."""
    if not isinstance(uri, str) or not uri.strip():
        raise BlobError(BlobErrorKind.INVALID_URI, "blob URI is empty")
    parts = urlsplit(uri.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BlobError(BlobErrorKind.INVALID_URI,
                        f"not an http(s) blob URL ({len(uri)} characters; the value is "
                        "not shown: it may be a secret)")
    if len([p for p in parts.path.split("/") if p]) < 2 and not _is_ip_style(parts.hostname):
        raise BlobError(BlobErrorKind.INVALID_URI,
                        f"blob URL has no container/blob path (host {parts.hostname[:100]!r})")
    return uri.strip()


def sas_expiry(uri: str) -> str:
    """The signed expiry (`se`) of a SAS URI, or '' when it has none."""
    values = parse_qs(urlsplit(uri).query).get("se")
    return values[0] if values else ""


def sas_expired(uri: str, now: Optional[datetime] = None) -> bool:
    expiry = sas_expiry(uri)
    if not expiry:
        return False
    try:
        when = datetime.fromisoformat(expiry.replace("Z", "+00:00"))
    except ValueError:
        return False
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when <= (now or datetime.now(timezone.utc))


def _is_ip_style(host: str) -> bool:
    return host in ("localhost",) or host.replace(".", "").isdigit() or ":" in host


class BlobUploader(Protocol):
    """The part of a blob store that sends a finished local file (a capture's upload)."""

    def upload_file(self, uri: str, path: str,
                    progress: Optional[ProgressHook] = None) -> int: ...


class BlockStager(BlobUploader, Protocol):
    """A blob store that also grows a block blob as its file grows (a streamed capture)."""

    def stage_block(self, uri: str, block_id: str, data: bytes) -> None: ...

    def commit_block_list(self, uri: str, block_ids: Sequence[str],
                          content_type: str = "application/octet-stream") -> None: ...

    def discard_staged(self, uri: str) -> None: ...


class BlobStore:
    """Writes, reads and snapshots blobs addressed by SAS URIs."""

    def __init__(self, policy: RetryPolicy = DEFAULT_POLICY, timeout: float = 30.0,
                 sleep: Callable[[float], None] = time.sleep,
                 redactor: Optional[Redactor] = None, chunk_size: int = 4 * 1024 * 1024,
                 max_concurrency: int = 2,
                 on_retry: Optional[Callable[[int, BaseException, float], None]] = None) -> None:
        self.policy = policy
        self.timeout = timeout
        self._sleep = sleep
        self._redact = redactor or Redactor()
        self.chunk_size = chunk_size
        self.max_concurrency = max_concurrency
        self._on_retry = on_retry
        self._deadline: Optional[float] = None
        self._monotonic: Callable[[], float] = time.monotonic

    def until(self, deadline: Optional[float],
              monotonic: Callable[[], float] = time.monotonic) -> "BlobStore":
        """This store with every call, retries included, bounded by `deadline` (a
        `monotonic()` instant): each attempt's timeouts shrink to the time left, and no attempt
        starts once it has passed (BlobError Timeout). None: bounded by the policy alone."""
        bounded = copy.copy(self)
        bounded._deadline, bounded._monotonic = deadline, monotonic
        return bounded

    def _time_left(self) -> float:
        if self._deadline is None:
            return self.timeout
        return min(self.timeout, self._deadline - self._monotonic())

    # -- operations -------------------------------------------------------------------
    def put_bytes(self, uri: str, data: bytes,
                  content_type: str = "application/octet-stream") -> None:
        """Create or replace a block blob holding `data`."""
        from azure.storage.blob import ContentSettings

        def put() -> None:
            self._client(uri).upload_blob(
                data, overwrite=True, content_settings=ContentSettings(content_type=content_type),
                timeout=self._server_timeout())
        self._with_retry("upload", uri, self._walled(put))

    def upload_file(self, uri: str, path: str, progress: Optional[ProgressHook] = None) -> int:
        """Upload a local file in chunks; returns the number of bytes sent."""
        size = os.path.getsize(path)
        last_progress = [time.monotonic()]

        def noted(current: int, total: Optional[int]) -> None:
            last_progress[0] = time.monotonic()
            if progress is not None:
                progress(current, total)

        def upload() -> None:
            last_progress[0] = time.monotonic()
            with open(path, "rb") as stream:
                self._client(uri).upload_blob(
                    stream, length=size, overwrite=True, max_concurrency=self.max_concurrency,
                    progress_hook=noted, timeout=self._server_timeout())
        self._with_retry("upload", uri, self._walled(upload, last_progress))
        return size

    def stage_block(self, uri: str, block_id: str, data: bytes) -> None:
        """Stage one block of a block blob (not visible until commit_block_list). Staging an
        id again replaces that block's uncommitted data; every id of a blob has one length.
        Bounded like upload_file: it runs on while its body goes out, not once it stalls."""
        last_progress = [time.monotonic()]

        def stage() -> None:
            last_progress[0] = time.monotonic()
            self._client(uri).stage_block(block_id, _Stamped(data, last_progress),
                                          length=len(data), timeout=self._server_timeout())
        self._with_retry("stage block", uri, self._walled(stage, last_progress))

    def commit_block_list(self, uri: str, block_ids: Sequence[str],
                          content_type: str = "application/octet-stream") -> None:
        """Make the blob exactly these blocks, in order (each the latest staged version)."""
        from azure.storage.blob import BlobBlock, ContentSettings

        blocks = [BlobBlock(block_id) for block_id in block_ids]  # each: its latest version
        self._with_retry("commit blocks", uri, self._walled(
            lambda: self._client(uri).commit_block_list(
                blocks, content_settings=ContentSettings(content_type=content_type),
                timeout=self._server_timeout())))

    def discard_staged(self, uri: str) -> None:
        """Drop the blocks staged on a blob and never committed (an interrupted upload's:
        storage keeps them a week, and meanwhile refuses any block whose id has another
        length, 400 InvalidBlobOrBlock): the blob's committed block list is committed again,
        so a blob made of blocks stays as it is (one written whole has no list: it empties)."""
        committed = self._with_retry("get block list", uri, self._walled(
            lambda: self._client(uri).get_block_list(
                "committed", timeout=self._server_timeout())[0]))
        self.commit_block_list(uri, [str(block.id) for block in committed])

    def read_bytes(self, uri: str) -> bytes:
        return self._with_retry("download", uri, self._walled(
            lambda: self._client(uri).download_blob(timeout=self._server_timeout()).readall()))

    def create_snapshot(self, uri: str, metadata: Optional[Mapping[str, str]] = None) -> str:
        """Snapshot a blob, returning the snapshot's timestamp id."""
        result = self._with_retry("snapshot", uri, self._walled(
            lambda: self._client(uri).create_snapshot(metadata=dict(metadata or {}),
                                                      timeout=self._server_timeout())))
        return str(result["snapshot"])

    def properties(self, uri: str) -> dict[str, object]:
        props = self._with_retry("get properties", uri, self._walled(
            lambda: self._client(uri).get_blob_properties(timeout=self._server_timeout())))
        return {"size": props.size, "metadata": dict(props.metadata or {}),
                "blob_type": str(props.blob_type), "last_modified": props.last_modified}

    def list_blobs(self, container_uri: str, prefix: str = "") -> list[BlobEntry]:
        """Every blob of a container (a container SAS with list permission), snapshots and
        metadata included."""
        from azure.storage.blob import ContainerClient

        def listing() -> list[BlobEntry]:
            client = ContainerClient.from_container_url(
                _http_uri(container_uri), retry_total=0,
                connection_timeout=max(0.5, self._time_left()),
                read_timeout=max(0.5, self._time_left()))
            return [BlobEntry(str(b.name), str(b.snapshot or ""), int(b.size or 0),
                              dict(b.metadata or {}))
                    for b in client.list_blobs(name_starts_with=prefix or None,
                                               include=["snapshots", "metadata"],
                                               timeout=self._server_timeout())]
        return self._with_retry("list", container_uri, listing)

    def start_copy(self, target_uri: str, source_uri: str) -> None:
        """Start a server-side copy of `source_uri` (a SAS URL, a snapshot's included) to
        `target_uri`; copy_status() follows it."""
        self._with_retry("copy", target_uri, self._walled(
            lambda: self._client(target_uri).start_copy_from_url(
                source_uri, timeout=self._server_timeout())))

    def copy_status(self, target_uri: str) -> str:
        """The state of the last copy into `target_uri`: pending, success, failed, aborted."""
        props = self._with_retry("copy status", target_uri, self._walled(
            lambda: self._client(target_uri).get_blob_properties(
                timeout=self._server_timeout())))
        return str(props.copy.status or "")

    def chunks(self, uri: str) -> Iterator[bytes]:
        """A blob's content in chunks, as it downloads (a failure mid-way raises BlobError)."""
        stream = self._with_retry("download", uri, self._walled(
            lambda: self._client(uri).download_blob(timeout=self._server_timeout())))
        iterator = stream.chunks()
        while True:
            try:
                chunk = next(iterator)
            except StopIteration:
                return
            except Exception as exc:  # noqa: BLE001 - every SDK failure is classified
                raise self._classify("download", uri, exc) from None
            yield chunk

    # -- machinery --------------------------------------------------------------------
    def _client(self, uri: str) -> BlobClient:
        from azure.storage.blob import BlobClient

        left = max(0.5, self._time_left())
        return BlobClient.from_blob_url(
            validate_blob_uri(uri), retry_total=0, connection_timeout=left,
            read_timeout=left, max_block_size=self.chunk_size,
            max_single_put_size=self.chunk_size)

    def _walled(self, call: Callable[[], T],
                progressed: Optional[list[float]] = None) -> Callable[[], T]:
        """`call` bounded in wall-clock time by the attempt's timeout (or the time left): the
        SDK's timeouts bound each socket read, and storage that trickles its answer a byte at a
        time would hold a small request forever. The request is left to finish in a daemon
        thread; its answer, if any, is dropped. With `progressed` (the monotonic time of the
        call's last progress, kept current by the call), a long call runs on while it
        progresses: the bound is then the deadline, if any, and STALL_FACTOR x the timeout
        without progress."""
        def bounded() -> T:
            limit = max(0.5, self._time_left()) + WALL_MARGIN
            value: list[T] = []
            error: list[BaseException] = []
            done = threading.Event()

            def run() -> None:
                try:
                    value.append(call())
                except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                    error.append(exc)
                finally:
                    done.set()
            threading.Thread(target=run, name="blob-request", daemon=True).start()
            if progressed is not None:
                self._wait_progressing(done, progressed)
            elif not done.wait(limit):
                raise WallTimeout(f"no complete answer within {limit:.0f}s")
            if error:
                raise error[0]
            return value[0]
        return bounded

    def _wait_progressing(self, done: threading.Event, progressed: list[float]) -> None:
        stall = STALL_FACTOR * self.timeout
        while not done.wait(0.25):
            if self._deadline is not None and self._time_left() + WALL_MARGIN <= 0:
                raise WallTimeout("not complete by its deadline")
            if time.monotonic() - progressed[0] > stall:
                raise WallTimeout(f"no progress for {stall:.0f}s")

    def _server_timeout(self) -> int:
        return max(1, int(self._time_left()))

    def _with_retry(self, what: str, uri: str, operation: Callable[[], T]) -> T:
        attempts = 0

        def attempt() -> T:
            nonlocal attempts
            if self._time_left() < 0.5:
                raise BlobError(BlobErrorKind.TIMEOUT, f"{what} of {strip_query(uri)} not "
                                f"{'retried' if attempts else 'attempted'}: its time is up")
            attempts += 1
            try:
                return operation()
            except BlobError:
                raise
            except Exception as exc:  # noqa: BLE001 - every SDK failure is classified
                raise self._classify(what, uri, exc) from None

        policy = self.policy
        if self._deadline is not None:  # no retry, and no backoff sleep, past the deadline
            policy = dataclasses.replace(policy, retry_on=lambda exc: self._time_left() > 0.5
                                         and self.policy.retry_on(exc))
        try:
            return policy.call(attempt, sleep=self._bounded_sleep, on_retry=self._on_retry)
        except BlobError as exc:
            exc.attempts = attempts
            raise

    def _bounded_sleep(self, seconds: float) -> None:
        self._sleep(seconds if self._deadline is None
                    else max(0.0, min(seconds, self._time_left() - 0.5)))

    def _classify(self, what: str, uri: str, exc: Exception) -> BlobError:
        from azure.core.exceptions import (
            HttpResponseError,
            ServiceRequestError,
            ServiceResponseError,
        )

        target = strip_query(uri)
        status_code: Optional[int] = getattr(exc, "status_code", None)
        if isinstance(exc, HttpResponseError) and status_code:
            status = int(status_code)
            code = getattr(exc, "error_code", None) or ""
            code = str(getattr(code, "value", code))
            first_line = self._redact(str(exc.message or exc).splitlines()[0])[:300]
            kind = _kind_for_status(status, code, first_line)
            if kind is BlobErrorKind.FORBIDDEN and sas_expired(uri):
                kind = BlobErrorKind.EXPIRED
                first_line = "the SAS token has expired (se=" + sas_expiry(uri) + ")"
            return BlobError(kind, f"{what} of {target} failed: HTTP {status} {code}: "
                             f"{first_line}", status=status, error_code=code or None)
        if isinstance(exc, WallTimeout):
            return BlobError(BlobErrorKind.TIMEOUT, f"{what} of {target} timed out: storage "
                             f"answered too slowly ({exc})")
        if isinstance(exc, ServiceResponseError) and "timed out" in str(exc).lower():
            return BlobError(BlobErrorKind.TIMEOUT, f"{what} of {target} timed out "
                             f"after {self.timeout:.0f}s")
        if isinstance(exc, (ServiceRequestError, ServiceResponseError)):
            text = str(exc)
            reason = self._redact(text.splitlines()[0])[:300] if text else type(exc).__name__
            return BlobError(BlobErrorKind.UNREACHABLE,
                             f"{what} of {target} failed: storage unreachable: {reason}")
        return BlobError(BlobErrorKind.FAILED, f"{what} of {target} failed: "
                         f"{type(exc).__name__}: {self._redact(str(exc))[:300]}")


def _kind_for_status(status: int, code: str, message: str) -> BlobErrorKind:
    lowered = (code + " " + message).lower()
    if status == 403:
        return BlobErrorKind.EXPIRED if "expir" in lowered else BlobErrorKind.FORBIDDEN
    if status == 404:
        return BlobErrorKind.NOT_FOUND
    if status == 409 and "snapshotcountexceeded" in lowered.replace(" ", ""):
        return BlobErrorKind.SNAPSHOT_LIMIT
    if status in (429, 503) or "serverbusy" in lowered:
        return BlobErrorKind.THROTTLED
    if status in (401,):
        return BlobErrorKind.FORBIDDEN
    if status == 408 or status >= 500:
        return BlobErrorKind.FAILED
    return BlobErrorKind.REJECTED
