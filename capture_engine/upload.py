"""Upload a finished capture to its storagePath with progress; failures keep the local file."""
from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Optional, Protocol, Sequence

from capture_engine import result as R
from capture_engine.errors import SasExpiredError, StorageForbiddenError, StorageUploadError
from capture_engine.naming import ring_seq, ring_suffix
from capture_engine.output import Recorder
from capture_engine.result import CaptureResult
from capture_engine.settings import CaptureRequest, public_url, storage_url
from plumbing.blobstore import BlobError, BlobErrorKind, BlobStore, BlobUploader
from plumbing.crashpoints import crashpoint

if TYPE_CHECKING:
    from capture_engine.streaming import Streamer

PROGRESS_EVERY = 2.0


class Reporting(Protocol):
    """What an upload needs from its session: the request, and its result to update."""

    request: CaptureRequest
    snapshot: CaptureResult

    def update(self, **changes: object) -> CaptureResult: ...

    def report(self) -> None: ...


def _error_for(exc: BlobError, kept: str) -> StorageUploadError:
    cls = {BlobErrorKind.EXPIRED: SasExpiredError,
           BlobErrorKind.FORBIDDEN: StorageForbiddenError}.get(exc.kind, StorageUploadError)
    return cls(f"upload failed ({exc.kind.value}): {exc}; the capture is kept at {kept}")


def _targets(request: CaptureRequest, files: Sequence[str],
             sas_token: Optional[str]) -> list[tuple[str, str]]:
    """(local file, blob URL) for each file: a ring file `…_N.cap` goes to
    `<storagePath stem>_N.cap`, N in full (never its last digits: no two files share a blob)."""
    if not request.ring:
        return [(path, storage_url(request, sas_token)) for path in files]
    return [(path, storage_url(request, sas_token, ring_suffix(ring_seq(path) or 0)))
            for path in files]


def upload_files(session: Reporting, recorder: Recorder, blob_store: Optional[BlobUploader],
                 sas_token: Optional[str]) -> None:
    """Upload every local file of the session; the result says what went where."""
    store: BlobUploader = blob_store or BlobStore()
    # A file that is not there (its folder removed mid-capture) was reported lost already.
    targets = [(path, url) for path, url in _targets(session.request, recorder.files, sas_token)
               if os.path.exists(path)]
    total = sum(os.path.getsize(path) for path, _ in targets)
    done, last = 0, [0.0]
    uploaded: list[str] = []
    session.update(upload_total=total, upload_bytes=0)

    def progress(current: int, _total: Optional[int]) -> None:
        session.update(upload_bytes=done + current)
        if time.monotonic() - last[0] >= PROGRESS_EVERY:
            last[0] = time.monotonic()
            session.report()

    for path, url in targets:
        crashpoint("capture.upload.before")
        try:
            done += store.upload_file(url, path, progress=progress)
        except BlobError as exc:
            error = _error_for(exc, path)
            session.update(status=R.ERROR, errors=tuple(session.snapshot.errors) +
                           (error.capture_error,), error_code=error.code,
                           error_message=error.message, uploaded_urls=tuple(uploaded))
            return
        except OSError as exc:
            error = StorageUploadError(f"cannot read {path} for upload: {exc.strerror or exc}")
            session.update(status=R.ERROR, errors=(error.capture_error,), error_code=error.code,
                           error_message=error.message, uploaded_urls=tuple(uploaded))
            return
        uploaded.append(public_url(url))
        crashpoint("capture.upload.after")
    session.update(uploaded_urls=tuple(uploaded), upload_bytes=done)
    _drop_pending(session, recorder)


def finish_stream(session: Reporting, recorder: Recorder, streamer: Streamer) -> None:
    """End a streamed session: send what is left; the result says what went where. What
    could not be sent stays local, and its record lets the next enable send it."""
    streamer.finish()
    session.update(**streamer.fields())
    problem = streamer.error or streamer.storage_problem
    if problem is None:
        _drop_pending(session, recorder)
        return
    kept = ", ".join(recorder.files) or recorder.base
    error = _error_for(streamer.error, kept) if streamer.error is not None else \
        StorageUploadError(f"cannot read the capture for upload: {problem}; kept at {kept}")
    session.update(status=R.ERROR, errors=tuple(session.snapshot.errors) +
                   (error.capture_error,), error_code=error.code, error_message=error.message)


def _drop_pending(session: Reporting, recorder: Recorder) -> None:
    """A file kept only until upload (no filePath/localPath given) goes once it is uploaded."""
    request = session.request
    if request.file_path or request.local_path:
        return
    recorder.drop_files()
    crashpoint("capture.pending_removed")
    session.update(local_files=())
