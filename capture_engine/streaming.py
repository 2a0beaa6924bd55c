"""Stream a capture to its storagePath while it runs: each ring file once it is closed, a
single file as it grows (block blob blocks committed at record boundaries). Storage that is
down never stops the capture: files wait on disk, above a floor of free space."""
from __future__ import annotations

import dataclasses
import logging
import os
import threading
from collections import deque
from typing import Any, Callable, Optional

from capture_engine.naming import ring_seq
from capture_engine.output import Recorder
from capture_engine.result import _cut
from capture_engine.settings import CaptureRequest, file_url, public_url
from capture_engine.streamstate import (
    DROPPED,
    INVALID_BLOCK,
    LOCAL,
    UPLOADED,
    UPLOADING,
    Journal,
    StreamRecord,
    StreamTuning,
    block_id,
    free_bytes,
)
from plumbing.blobstore import BlobError, BlockStager
from plumbing.clock import Clock
from plumbing.crashpoints import crashpoint

log = logging.getLogger(__name__)
POLL_SECONDS = 0.5
ABANDON_SECONDS = 5.0  # a failed session waits this long at most for an upload under way
FILES_SHOWN, PATH_CHARS = 6, 240


class Streamer:
    """One session's uploader thread; the capture only hands it closed files and offsets."""

    def __init__(self, request: CaptureRequest, recorder: Recorder, store: BlockStager,
                 sas_token: Optional[str], clock: Clock,
                 tuning: Optional[StreamTuning] = None) -> None:
        self.request, self.recorder, self.store, self.clock = request, recorder, store, clock
        self.sas_token, self.tuning = sas_token, tuning or StreamTuning()
        self.journal = Journal(request.capture_root)
        self.record = StreamRecord(request.name, os.path.abspath(recorder.base),
                                   bool(request.ring),
                                   not (request.file_path or request.local_path),
                                   storage=public_url(request.storage_path or ""),
                                   claimed_ns=recorder.claim.claimed_ns if recorder.claim
                                   else 0)
        self._cond = threading.Condition()
        self._queue: deque[str] = deque()  # closed ring files not uploaded yet, oldest first
        self._states: dict[str, str] = {}  # the files kept locally, by age, and their state
        self._retired: set[str] = set()    # rotation wanted them gone: deleted once uploaded
        self._dropped: deque[str] = deque(maxlen=2)
        self._sending: Optional[str] = None
        self._final = self._abandoned = False
        self.uploaded, self.sent_bytes = 0, 0
        self.urls: list[str] = []  # the first and the last blob uploaded (public)
        self.error: Optional[BlobError] = None
        self.storage_problem: Optional[str] = None
        self.notes: list[str] = []
        self._blocks: list[str] = []  # a single file's full blocks, committed
        self._tail_start = 0          # where its last (short, re-staged) block starts
        # Each commit stages its last block under an id of its own generation (a random start:
        # not those of an earlier process either). A commit storage executes late, after we
        # gave up on it, names a block the next commit discarded: it fails (InvalidBlockList)
        # instead of taking the blob back to an older list. Full blocks keep one id each, so
        # refused commits never pile up staged blocks.
        self._generation = int.from_bytes(os.urandom(4), "big")
        self._discarded = False  # an earlier upload's staged blocks dropped (once)
        self._last_commit = clock.monotonic()
        self._next_try, self._wait = 0.0, self.tuning.retry_seconds
        self._block_bytes = self.tuning.block_bytes(recorder.plan.max_file_bytes)
        self._thread = threading.Thread(target=self._run, name="capture-stream", daemon=True)

    # -- the capture's side ---------------------------------------------------------------
    def start(self) -> None:
        """Record (durably) that this capture streams, then hook the recorder's rotation."""
        self.journal.save(self.record)
        crashpoint("capture.stream.recorded")
        earlier = self.recorder.on_closed  # the caller's own (the CLI's -z) still runs

        def closed(path: str) -> None:
            self.file_closed(path)
            if earlier is not None:
                earlier(path)
        self.recorder.on_closed, self.recorder.keep = closed, self.keep
        self._thread.start()

    def file_closed(self, path: str) -> None:
        with self._cond:
            if path not in self._states:
                self._queue.append(path)
                self._states[path] = LOCAL
            self._cond.notify_all()

    def keep(self, path: str) -> bool:
        """A ring file leaves the ring: deleted now if uploaded, else once it is (or dropped
        at the free-space floor)."""
        with self._cond:
            if self._states.get(path) != LOCAL and path != self._sending:
                self._states.pop(path, None)
                return False
            self._retired.add(path)
        self._keep_floor()
        return True

    def finish(self, waiting: Optional[Callable[[], None]] = None,
               every: float = 2.0) -> None:
        """The session ended and its last file is closed: send what is left (one more try,
        under the store's retry policy), then stop. `error` says what could not be sent;
        `waiting` is called every `every` seconds meanwhile (progress reports)."""
        if self.record.ring and self.recorder.files and os.path.exists(self.recorder.files[-1]):
            self.file_closed(self.recorder.files[-1])
        with self._cond:
            self._final = True
            self._cond.notify_all()
        self._thread.join(every)
        while self._thread.is_alive():
            if waiting is not None:
                waiting()
            self._thread.join(every)
        if self.error is None and self.storage_problem is None:
            self.record = dataclasses.replace(self.record, done=True)
            self.journal.remove(self.record)
            crashpoint("capture.stream.done")

    def abandon(self) -> None:
        """The session failed unexpectedly: stop now; the record lets a restart send the rest.
        An upload under way (storage that hangs: minutes under the store's retry policy) is
        waited for ABANDON_SECONDS at most, so the failure is reported now; the thread, a
        daemon, ends after that file or commit."""
        with self._cond:
            self._abandoned = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(ABANDON_SECONDS)

    # -- the uploader thread --------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                if not (self._final or self._abandoned):
                    self._cond.wait(POLL_SECONDS)
                final, abandoned = self._final, self._abandoned
            if abandoned:
                return
            if not final and self.clock.monotonic() < self._next_try:
                continue
            try:
                if self.record.ring:
                    self._ring_pass()
                else:
                    self._grow(final)
                self._reachable()
            except Exception as exc:  # noqa: BLE001 - never a silent end: kept, said, retried
                if not isinstance(exc, BlobError):
                    log.exception("capture %s: cannot send", self.request.name)
                if final:
                    self.error = exc if isinstance(exc, BlobError) else None
                    self.storage_problem = str(exc) or type(exc).__name__
                    return
                self._unreachable(exc)
            if final:
                return

    def _unreachable(self, exc: Exception) -> None:
        if self.storage_problem is None:
            self._note(f"storage unreachable, files are kept locally until it returns: {exc}")
        self.storage_problem = str(exc)
        self._next_try = self.clock.monotonic() + self._wait
        self._wait = min(self._wait * 2, self.tuning.retry_max_seconds)

    def _reachable(self) -> None:
        if self.storage_problem is not None:
            self._note("storage reachable again: sending the files kept meanwhile")
        self.storage_problem, self._wait = None, self.tuning.retry_seconds

    def _save_record(self) -> None:
        """Record what storage holds now. A disk too full to take the record (the capture's
        own disk, filled) is not storage failing: it is noted, and the sending goes on - a
        restart then sends again what was sent since the last record, to the same blobs."""
        try:
            self.journal.save(self.record)
        except OSError as exc:
            if not any(note.startswith("cannot record") for note in self.notes):
                self._note(f"cannot record the upload progress: {exc.strerror or exc}")

    def _note(self, text: str) -> None:
        log.info("capture %s: %s", self.request.name, text)
        with self._cond:
            self.notes = (self.notes + [text])[-3:]

    def _url(self, path: str) -> str:
        return file_url(self.request, path, self.sas_token)

    def _ring_pass(self) -> None:
        """Upload the closed ring files, oldest first; one that fails stays first in line."""
        while True:
            with self._cond:
                if not self._queue or self._abandoned:
                    return
                path = self._sending = self._queue[0]
                self._states[path] = UPLOADING
                if not os.path.exists(path):  # removed by hand: nothing left to send
                    self._queue.popleft()
                    self._sending = None
                    del self._states[path]
                    continue
            try:
                size = self.store.upload_file(self._url(path), path)
            except BaseException:
                with self._cond:
                    self._sending, self._states[path] = None, LOCAL
                raise
            crashpoint("capture.stream.file_uploaded")
            self._uploaded(path, size)

    def _uploaded(self, path: str, size: int) -> None:
        with self._cond:
            self._sending = None
            self._queue.popleft()
            self.uploaded, self.sent_bytes = self.uploaded + 1, self.sent_bytes + size
            self.urls = (self.urls[:1] + [public_url(self._url(path))])[-2:]
            retired = path in self._retired
            self._retired.discard(path)
            self._states[path] = UPLOADED
            if retired:
                del self._states[path]
            self.record = dataclasses.replace(self.record, uploaded_seq=ring_seq(path) or 0)
        self._save_record()
        if retired:  # the ring let it go already: it was kept only until uploaded
            os.unlink(path)
            crashpoint("capture.stream.retired_removed")

    def _keep_floor(self) -> None:
        """While files wait for storage, keep the disk's floor of free space: the oldest file
        the ring already let go goes first, counted and noted - never silently."""
        folder = os.path.dirname(self.record.base) or "."
        try:
            floor, free = self.tuning.floor(folder), free_bytes(folder)
        except OSError:
            return
        while free < floor:
            with self._cond:
                victim = next((p for p in self._queue if p in self._retired
                               and p != self._sending), None)
                if victim is None:
                    return
                self._queue.remove(victim)
                self._retired.discard(victim)
                del self._states[victim]
                self._dropped.append(victim)
                self.record = dataclasses.replace(self.record, dropped=self.record.dropped + 1)
            try:
                free += os.path.getsize(victim)
                os.unlink(victim)
            except OSError:
                pass
            self._note(f"free space below {floor} bytes while storage is unreachable: "
                       f"dropped {victim} before upload ({self.record.dropped} dropped)")

    # -- a single file, growing -------------------------------------------------------------
    def _grow(self, final: bool) -> None:
        path = self.recorder.base
        if final:
            if not os.path.exists(path):
                return  # the file was lost: reported by the capture already
            end = os.path.getsize(path)
        else:
            end = self.recorder.complete_offset
        new, now = end - self.record.committed, self.clock.monotonic()
        due = new >= self.tuning.commit_bytes or (
            new > 0 and now - self._last_commit >= self.tuning.commit_seconds)
        if due or (final and (new > 0 or not self.record.committed)):
            self._commit(path, end)
            self._last_commit = now
        with self._cond:  # part of it in storage: uploading; all of it, at the end: uploaded
            if self.record.committed:
                self._states[path] = UPLOADED if final and self.record.committed == end \
                    else UPLOADING

    def _commit(self, path: str, end: int) -> None:
        """Stage the bytes after the last full block (the short tail again, under its own id)
        and commit: the blob is then the file up to `end`, a record boundary. A blob someone
        deleted or replaced meanwhile has lost our blocks: it is sent whole again."""
        url = self._url(path)
        self._generation += 1
        try:
            ids = self._stage(path, url, list(self._blocks), self._tail_start, end)
        except BlobError as exc:
            if exc.error_code != INVALID_BLOCK or self._discarded:
                raise
            self._discarded = True  # once: a block refused for another reason stays refused
            self._note("the blob held blocks an earlier upload staged and never committed, "
                       "refusing ours: they were dropped")
            self.store.discard_staged(url)
            ids = self._stage(path, url, list(self._blocks), self._tail_start, end)
        crashpoint("capture.stream.before_commit")
        try:
            self.store.commit_block_list(url, ids)
        except BlobError as exc:
            if exc.error_code != "InvalidBlockList" or not self._blocks:
                raise
            self._note("the blob was deleted or replaced by someone else: sending the whole "
                       "file again")
            self._blocks, self._tail_start = [], 0
            self._generation += 1
            ids = self._stage(path, url, [], 0, end)
            self.store.commit_block_list(url, ids)
        crashpoint("capture.stream.after_commit")
        size = self._block_bytes
        full = (end - self._tail_start) // size
        self._blocks = ids[:len(self._blocks) + full]
        self._tail_start += full * size
        with self._cond:
            self.sent_bytes, self.uploaded, self.urls = end, 1, [public_url(url)]
            self.record = dataclasses.replace(self.record, committed=end)
        self._save_record()

    def _stage(self, path: str, url: str, ids: list[str], start: int, end: int) -> list[str]:
        """Stage the file from `start` (a block boundary) to `end`, after blocks `ids`: each
        full block under one id whatever the try (staged again, it replaces itself), the last
        block under this commit's generation."""
        size = self._block_bytes
        with open(path, "rb") as source:
            while start < end or not ids:
                piece = min(size, end - start)
                source.seek(start)
                data = source.read(piece)
                if len(data) != piece:
                    raise OSError(f"{path} is shorter than the capture wrote")
                start += piece
                last = start >= end or piece < size
                ids.append(block_id(len(ids), self._generation if last else 0))
                self.store.stage_block(url, ids[-1], data)
                if last:
                    break
        return ids

    # -- status -----------------------------------------------------------------------------
    def _state(self, counts: dict[str, int]) -> str:
        """`streaming` (or `storageUnreachable`) while it runs; once it has ended, `complete`
        when every file is in storage, else `incomplete` (the record lets an enable resume)."""
        if (self._final or self._abandoned) and not self._thread.is_alive():
            whole = self.error is None and self.storage_problem is None and \
                not counts[LOCAL] and not counts[UPLOADING]
            return "complete" if whole else "incomplete"
        return "storageUnreachable" if self.storage_problem else "streaming"

    def fields(self) -> dict[str, Any]:
        """CaptureResult fields: what is in storage, and each local file's state."""
        with self._cond:
            states = dict(self._states)
            for path in self.recorder.files:
                states.setdefault(path, LOCAL)
            files = [(p, s) for p, s in states.items() if os.path.exists(p)]
            shown = ([(p, DROPPED) for p in self._dropped] + files)[-FILES_SHOWN:]
            counts = {state: sum(1 for _, s in files if s == state)
                      for state in (LOCAL, UPLOADING, UPLOADED)}
            counts[DROPPED] = self.record.dropped
            stream: dict[str, object] = {
                "state": self._state(counts),
                "fileStates": counts,
                "files": [{"file": _cut(p, PATH_CHARS), "state": s,
                           "blob": _cut(public_url(self._url(p)), PATH_CHARS)}
                          for p, s in shown],
            }
            if not self.record.ring:
                stream["committedBytes"] = self.record.committed
            if self.storage_problem:
                stream["storageProblem"] = _cut(self.storage_problem, PATH_CHARS)
            if self.notes:
                stream["notes"] = [_cut(note, PATH_CHARS) for note in self.notes]
            waiting = [p for p in self._queue if p != self._sending] if self.record.ring else []
            total = self.sent_bytes + sum(_size(p) for p in waiting) if self.record.ring \
                else max(self.record.committed, self.recorder.complete_offset)
            return {"uploaded_urls": tuple(self.urls), "uploaded_count": self.uploaded,
                    "upload_bytes": self.sent_bytes, "upload_total": total, "stream": stream}


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0
