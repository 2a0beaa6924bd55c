"""The end of a streamed upload (streaming.py): what is left is sent, the result says where."""
from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from capture_engine import result as R
from capture_engine.errors import SasExpiredError, StorageForbiddenError, StorageUploadError
from capture_engine.output import Recorder
from capture_engine.result import CaptureResult
from capture_engine.settings import CaptureRequest
from plumbing.blobstore import BlobError, BlobErrorKind
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


def finish_stream(session: Reporting, recorder: Recorder, streamer: Streamer) -> None:
    """End a streamed session: send what is left; the result says what went where. What
    could not be sent stays local, and its record lets the next enable send it."""
    def waiting() -> None:
        session.update(**streamer.fields())
        session.report()
    streamer.finish(waiting, PROGRESS_EVERY)
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
