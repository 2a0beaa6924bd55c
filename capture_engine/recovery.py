"""After a worker died mid-capture: send the files its stream record says never reached storage."""
from __future__ import annotations

import contextlib
import dataclasses
import os
import stat
from dataclasses import dataclass
from typing import Optional

from capture_engine.naming import ring_seq, ring_suffix
from capture_engine.owners import Owners
from capture_engine.pcapfile import HEADER_SIZE, RECORD_HEADER
from capture_engine.settings import CaptureRequest, public_url, storage_url
from capture_engine.streamstate import (
    INVALID_BLOCK,
    Journal,
    StreamRecord,
    StreamTuning,
    block_id,
)
from plumbing.blobstore import BlobError, BlockStager
from plumbing.crashpoints import crashpoint


@dataclass(frozen=True)
class Recovered:
    """What a recovery sent (public blob URLs), what is still only local, and why."""

    uploaded: tuple[str, ...] = ()
    pending: tuple[str, ...] = ()
    error: Optional[str] = None

    def status(self) -> dict[str, object]:
        """The `streaming` object of the capture's status after the recovery."""
        found: dict[str, object] = {
            "state": "uploadPending" if self.pending else "recoveredAfterRestart",
            "recoveredUploads": len(self.uploaded), "pendingFiles": len(self.pending)}
        if self.error:
            found["storageProblem"] = self.error[:300]
        return found


def pending_uploads(request: CaptureRequest) -> list[str]:
    """The local files of capture `request.name` that a dead worker never sent."""
    return [path for record in Journal(request.capture_root).records(request.name)
            for path in _sendable(record, request.capture_root)]


def _sendable(record: StreamRecord, capture_root: str) -> list[str]:
    """The record's unsent files that a capture can have written: regular files under the
    capture root. A record naming anything else (a symlink, /etc/shadow) was not written by
    a capture: nothing of it is sent, nor cut. Nor are files a later start of the name
    claimed anew (the record's own files removed by hand): they are not the record's."""
    if record.claimed_ns and not any(
            (claim.path, claim.claimed_ns) == (record.base, record.claimed_ns)
            for claim in Owners(capture_root).claims(record.name)):
        return []
    root = os.path.realpath(capture_root) + os.sep
    found = []
    for path in record.pending_files():
        with contextlib.suppress(OSError):
            if os.path.realpath(path).startswith(root) and \
                    stat.S_ISREG(os.lstat(path).st_mode):
                found.append(path)
    return found


def _blob_url(request: CaptureRequest, record: StreamRecord, path: str,
              sas_token: Optional[str]) -> str:
    """The blob the file streamed to: the record's storagePath (an earlier start of the same
    name may have used another one), with this request's token."""
    target = request
    if record.storage and record.storage != public_url(request.storage_path or ""):
        target = dataclasses.replace(request, storage_path=record.storage)
    suffix = ring_suffix(ring_seq(path) or 0) if record.ring else ""
    return storage_url(target, sas_token, suffix)


def recover_uploads(request: CaptureRequest, store: BlockStager,
                    sas_token: Optional[str] = None) -> Recovered:
    """Upload every file a dead worker left unsent, to the blob it would have used: a single
    file whole (cut after its last complete record), ring files each to its own blob (the
    newest, the one being written, cut likewise)."""
    journal, sent = Journal(request.capture_root), []
    for record in journal.records(request.name):
        try:
            files = _sendable(record, request.capture_root)
            for path in files:
                if not record.ring:
                    cut_after_last_record(path, record.committed)
                elif path == files[-1]:  # the ring file being written when the worker died
                    cut_after_last_record(path, 0)
                url = _blob_url(request, record, path, sas_token)
                if record.ring:
                    store.upload_file(url, path)
                else:
                    send_in_blocks(store, url, path)
                crashpoint("capture.stream.recovered_file")
                sent.append(public_url(url))
                if record.ring:
                    record = dataclasses.replace(record, uploaded_seq=ring_seq(path) or 0)
                    journal.save(record)
        except (BlobError, OSError) as exc:
            return Recovered(tuple(sent), tuple(pending_uploads(request)), str(exc))
        journal.remove(record)
        crashpoint("capture.stream.recovered")
        if record.pending_only:
            _drop(request, record)
    return Recovered(tuple(sent))


def forget_streams(request: CaptureRequest) -> None:
    """action=delete: the capture's files are gone, and with them what it had left to send
    (a later start of the name, local only, must not be taken for this one)."""
    journal = Journal(request.capture_root)
    for record in journal.records(request.name):
        journal.remove(record)


def send_in_blocks(store: BlockStager, url: str, path: str) -> None:
    """Upload a single file whole, in blocks named as the streamer names them: blocks a
    killed streamer staged and never committed stay on the blob for days, and storage refuses
    a block whose id has another length (the SDK's own chunked upload: 400 InvalidBlobOrBlock).
    Each id staged again replaces that leftover block; leftovers of another upload (ids of
    another length) are dropped first."""
    if os.path.getsize(path) == 0:
        store.upload_file(url, path)  # one Put Blob: nothing to stage
        return
    try:
        ids = _stage_file(store, url, path)
    except BlobError as exc:
        if exc.error_code != INVALID_BLOCK:
            raise
        store.discard_staged(url)
        ids = _stage_file(store, url, path)
    store.commit_block_list(url, ids)


def _stage_file(store: BlockStager, url: str, path: str) -> list[str]:
    size = os.path.getsize(path)
    block = StreamTuning().block_bytes(size)
    ids: list[str] = []
    with open(path, "rb") as source:
        for _ in range(0, size, block):
            data = source.read(block)
            if not data:
                break
            ids.append(block_id(len(ids)))
            store.stage_block(url, ids[-1], data)
    return ids


def cut_after_last_record(path: str, start: int) -> int:
    """Truncate a file its writer died writing after its last complete record; `start` is a
    record boundary (what was committed), so only the part after it is read."""
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        size, offset = os.fstat(fd).st_size, max(start, HEADER_SIZE)
        while offset + RECORD_HEADER.size <= size:
            caplen = RECORD_HEADER.unpack(os.pread(fd, RECORD_HEADER.size, offset))[2]
            if offset + RECORD_HEADER.size + caplen > size:
                break
            offset += RECORD_HEADER.size + caplen
        if size > HEADER_SIZE and offset < size:
            os.ftruncate(fd, offset)
        return min(offset, size)
    finally:
        os.close(fd)


def _drop(request: CaptureRequest, record: StreamRecord) -> None:
    """A capture with only a storagePath keeps its files only until they are uploaded."""
    owners = Owners(request.capture_root)
    with owners.lock():
        for claim in owners.claims(request.name):
            if claim.path == record.base:
                for path in claim.files():
                    with contextlib.suppress(OSError):
                        os.unlink(path)
                owners.release(claim)
