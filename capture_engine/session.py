"""A blocking capture session: open, capture to the limits, drain, write, upload."""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import threading
import time
from datetime import datetime
from typing import Any, Callable, Iterable, Optional

from capture_engine import pcaplib
from capture_engine import result as R
from capture_engine.attach import Insn
from capture_engine.bpf import FILTER_READS, WHOLE_PACKET, compile_filters, loopback_rule
from capture_engine.errors import (
    BackendUnavailableError,
    CaptureError,
    CaptureFailedError,
    CaptureNotFoundError,
    LocalFileError,
)
from capture_engine.interfaces import LinkTable, in_netns, resolve_interfaces
from capture_engine.linkwatch import CHECK_EVERY, GONE, UP, LinkChange, LinkWatch
from capture_engine.output import STOP_BYTES, STOP_COUNT, STOP_FILES, OutputPlan, Recorder
from capture_engine.owners import Owners
from capture_engine.pcapfile import FdSink
from capture_engine.pcapng import PcapngFormat
from capture_engine.result import CaptureResult
from capture_engine.seams import CaptureBackend, SourceOptions
from capture_engine.settings import LIMITS, CaptureRequest
from capture_engine.streaming import Streamer
from capture_engine.streamstate import StreamTuning
from capture_engine.upload import finish_stream
from plumbing.blobstore import BlobStore, BlockStager
from plumbing.clock import Clock, SystemClock
from plumbing.crashpoints import crashpoint

log = logging.getLogger(__name__)
Progress = Callable[[dict[str, object]], None]
PROGRESS_EVERY = 2.0
MAX_NAP = 0.5  # the longest the main loop sleeps, so the dispatch thread's end is noticed
DRAIN_SECONDS = 0.5  # > 2x the ring's block retire timeout (200 ms)
BACKENDS = ("auto", "libpcap", "rawsocket")
NOTES_KEPT = 5
DEFAULT_TIME_LIMIT = LIMITS["timeLimitInSeconds"][0]


def make_backend(name: str = "auto", options: SourceOptions = SourceOptions()) -> CaptureBackend:
    """The libpcap backend when libpcap loads (or is asked for), else the raw-socket one."""
    from capture_engine.backend_libpcap import LibpcapBackend
    from capture_engine.backend_raw import RawSocketBackend

    if name not in BACKENDS:
        raise BackendUnavailableError(f"unknown backend {name!r} (use {', '.join(BACKENDS)})")
    if name == "rawsocket" or (name == "auto" and not pcaplib.available()):
        return RawSocketBackend(options=options)
    return LibpcapBackend(options=options)


def program_for(request: CaptureRequest, backend: str = "rawsocket",
                directional: bool = True) -> list[Insn]:
    """The kernel filter; its accept value is the snap length the kernel stores.

    libpcap re-runs the filter in user space on the first ring block after pcap_setfilter,
    on the stored bytes only: its kernel program keeps enough bytes for the filter to read
    every header field, and libpcap's own snap length cuts the records to the limit.
    `directional=False` is that user-space filter: it cannot read a packet's direction.
    """
    snaplen = min(request.bytes_per_packet or WHOLE_PACKET, WHOLE_PACKET)
    if backend == "libpcap":
        snaplen = WHOLE_PACKET if request.bpf_expression else max(snaplen, FILTER_READS)
    if request.bpf_expression:
        program = pcaplib.compile_expression(request.bpf_expression, snaplen)
        return loopback_rule(program) if directional else program
    return compile_filters(request.filters, snaplen, directional)


def time_limit(request: CaptureRequest) -> float:
    """timeLimitInSeconds bounds every session; a ring also stops at its
    sessionTimeLimitInSeconds. The settings cannot tell timeLimitInSeconds absent from one at
    its default (18,000 s): then a ring runs to sessionTimeLimitInSeconds alone."""
    if not request.ring:
        return request.time_limit
    if request.time_limit == DEFAULT_TIME_LIMIT:
        return request.ring.session_time_limit
    return min(request.time_limit, request.ring.session_time_limit)


def output_plan(request: CaptureRequest) -> OutputPlan:
    snaplen = min(request.bytes_per_packet or WHOLE_PACKET, WHOLE_PACKET)
    size, count = (request.ring.file_size, request.ring.file_count) if request.ring else \
        (request.total_bytes, 0)
    return OutputPlan(request.output_path(), snaplen, size, count, request.packet_count,
                      owner=request.name if request.claim_files else None,
                      capture_root=request.capture_root, rotation=request.rotation)


class _Session:
    def __init__(self, request: CaptureRequest, stop_event: threading.Event,
                 on_progress: Optional[Progress], clock: Clock, netns: Optional[str],
                 progress_interval: float = PROGRESS_EVERY,
                 on_rotated: Optional[Callable[[str], None]] = None) -> None:
        self.request, self.stop_event, self.clock, self.netns = request, stop_event, clock, netns
        self.on_rotated = on_rotated
        self.progress_interval = progress_interval
        self.on_progress = on_progress or (lambda status: None)
        # The caller's read-only `target` (the VM's resource id) is echoed, never checked.
        self.snapshot = CaptureResult(name=request.name, extra=(
            {"target": request.target} if request.target else {}))
        # Set by open(), in this order; fail() closes those a failed start left.
        self.watch: Optional[LinkWatch] = None
        self.backend: Optional[CaptureBackend] = None
        self.recorder: Optional[Recorder] = None
        self.interface_problem: Optional[str] = None
        self.streamer: Optional[Streamer] = None  # with a storagePath: uploads as it goes
        self._start_time: Optional[datetime] = None
        self._start_wall = self._started = 0.0

    def update(self, **changes: Any) -> CaptureResult:
        # Any: each keyword is a CaptureResult field, each of its own type (replace() rejects
        # a name that is not a field).
        self.snapshot = dataclasses.replace(self.snapshot, **changes)
        return self.snapshot

    def parts(self) -> tuple[CaptureBackend, Recorder, LinkWatch]:
        """The backend, recorder and link watch: all there once open() has returned."""
        if self.backend is None or self.recorder is None or self.watch is None:
            raise CaptureError("internal error: the capture is not open")
        return self.backend, self.recorder, self.watch

    def report(self) -> None:
        try:
            self.on_progress(self.snapshot.querystatus())
        except Exception:  # noqa: BLE001 - a progress consumer must not kill the capture
            log.exception("progress callback failed")

    def counters(self) -> CaptureResult:
        be, rec, _ = self.parts()
        elapsed = round(self.clock.monotonic() - self._started, 3) if self._started else 0.0
        if self.streamer is not None:
            self.update(**self.streamer.fields())
        return self.update(packets_captured=rec.packets, bytes_written=rec.bytes_written,
                           packets_dropped=be.dropped, local_files=tuple(rec.files),
                           extra={**self.snapshot.extra, "elapsedSeconds": elapsed})

    def note(self, text: str) -> None:
        log.info("capture %s: %s", self.request.name, text)
        self.update(notes=(self.snapshot.notes + (text,))[-NOTES_KEPT:])

    def open(self, backend_name: str) -> None:
        # The start time first: every packet the sockets see afterwards is stamped after it.
        # The limit runs on self.clock; _start_wall is on the kernel's packet-stamp scale (real
        # wall time), the only scale the drain's cutoff can be compared on.
        self._start_time, self._start_wall = self.clock.now(), time.time()
        self._started = self.clock.monotonic()
        with in_netns(self.netns):
            table = LinkTable()
            try:
                links = table.links()
                interfaces = resolve_interfaces(self.request.interfaces, links)
            except BaseException:
                table.close()
                raise
            self.watch = watch = LinkWatch(table, links, interfaces)
            self.backend = backend = make_backend(backend_name, self.request.source)
            program = program_for(self.request, backend.name)
            backend.open(interfaces, program, self.request.bytes_per_packet,
                         frozenset(watch.optional),
                         program_for(self.request, backend.name, directional=False))
        self.update(backend=backend.name, interfaces=tuple(interfaces))
        if backend.name == "libpcap":  # the VM's own, or the one the package carries
            self.note(f"libpcap: {pcaplib.loaded().describe()}")
        elif backend_name == "auto":  # raw sockets cost 3x the CPU: say why
            self.note(f"libpcap not used: {pcaplib.unavailable_reason()}")
        plan = output_plan(self.request)
        wall = lambda: self.clock.now().timestamp()  # noqa: E731 - -G's clock
        if self.request.pcapng:  # Python writes it: the backend hands over its batches
            fmt = PcapngFormat(interfaces)
            self.recorder = recorder = Recorder(plan, FdSink(fmt.file_header), fmt, wall)
        else:
            self.recorder = recorder = Recorder(plan, backend.make_sink(), wall=wall)
        recorder.on_closed = self.on_rotated
        try:
            os.makedirs(os.path.dirname(plan.path) or ".", exist_ok=True)
            recorder.start()
        except OSError as exc:
            raise LocalFileError(f"cannot create {plan.file_path(1, recorder.base)}: "
                                 f"{exc.strerror or exc}") from None
        if recorder.base != plan.path:
            self.update(requested_local_path=plan.file_path(1))

    def stream(self, store: BlockStager, sas_token: Optional[str],
               tuning: Optional[StreamTuning]) -> None:
        """Upload to the storagePath as the capture goes (streaming.py)."""
        self.streamer = Streamer(self.request, self.parts()[1], store, sas_token, self.clock,
                                 tuning)
        self.streamer.start()

    def abandon_stream(self) -> None:
        if self.streamer is not None:
            self.streamer.abandon()

    def capture(self) -> str:
        """Run the dispatch thread until a limit, a stop request or a failure; the reason."""
        backend, recorder, _ = self.parts()
        thread = threading.Thread(target=self._dispatch, name="capture-dispatch", daemon=True)
        self.update(status=R.RUNNING, capture_start_time=self._start_time)
        self.report()
        start, limit = self._started, time_limit(self.request)
        next_progress = self.clock.monotonic() + self.progress_interval
        next_check = self.clock.monotonic() + CHECK_EVERY
        thread.start()
        reason: Optional[str] = None
        while reason is None and thread.is_alive():
            now = self.clock.monotonic()
            if self.stop_event.is_set():
                reason = R.STOPPED_BY_REQUEST
            elif now - start >= limit:
                reason = R.TIME_EXCEEDED
            elif now >= next_check:
                reason, next_check = self._check(), now + CHECK_EVERY
            elif now >= next_progress:
                self.counters()
                self.report()
                next_progress = now + self.progress_interval
            else:
                # Sleep to the next deadline, check or report; a stop request wakes us at once.
                until = min(limit - (now - start), next_progress - now, next_check - now,
                            MAX_NAP)
                self.stop_event.wait(max(until, 0.001))
        if reason is not None or (backend.failure and not recorder.done):
            # Keep reading until partly filled ring blocks have been retired, but keep only
            # what was stamped before the stop time. Both on the real clock: the stamps are
            # the kernel's wall time, and the retire timer the drain waits for is the kernel's.
            recorder.cutoff_us = int(min(time.time(), self._start_wall + limit) * 1e6)
            time.sleep(DRAIN_SECONDS)
        backend.stop()
        thread.join()
        recorder.check_file()
        backend.drain(recorder)
        return reason or self._own_reason()

    def _check(self) -> Optional[str]:
        """The file is still there; a required interface gone or down ends the capture, an
        enslaved one (a VF during host servicing) is left, then captured again once back."""
        backend, recorder, watch = self.parts()
        recorder.check_file()  # a lost file ends the dispatch thread: see _own_reason
        for change in watch.check():
            if change.required:
                self.interface_problem = change.describe()
                return R.INTERFACE_DOWN
            if change.state == GONE:
                backend.detach(change.name)
                self.note(f"{change.describe()}; the capture goes on without it")
            elif change.state == UP:
                self._reattach(change)
        return None

    def _reattach(self, change: LinkChange) -> None:
        backend, _, watch = self.parts()
        try:
            with in_netns(self.netns):
                backend.attach(change.name)
        except CaptureError as exc:  # tried again on the next check
            log.warning("cannot capture on %s again yet: %s", change.name, exc.message)
            return
        watch.reattached(change.name, change.index)
        self.note(f"{change.describe()}: capturing on it again")

    def _dispatch(self) -> None:
        backend, recorder, _ = self.parts()
        try:
            backend.run(recorder)
        except Exception as exc:  # noqa: BLE001 - reported as the session's failure
            log.exception("capture dispatch failed")
            backend.failure = f"capture loop failed: {type(exc).__name__}: {exc}"

    def _own_reason(self) -> str:
        _, rec, watch = self.parts()
        if rec.error is not None:
            return R.DISK_FULL if rec.error.disk_full else R.LOCAL_FILE_FAILED
        if rec.done_reason == STOP_BYTES:
            return R.BYTE_LIMIT
        if rec.done_reason == STOP_COUNT:
            return R.PACKET_COUNT
        if rec.done_reason == STOP_FILES:
            return STOP_FILES  # the CLI's -G with -W
        # The backend failed: an interface that went away, or a read error.
        gone = [change for change in watch.check() if change.required]
        if gone:
            self.interface_problem = gone[0].describe()
            return R.INTERFACE_DOWN
        return R.CAPTURE_FAILED

    def finish(self, reason: str) -> None:
        backend, recorder, _ = self.parts()
        recorder.close()
        crashpoint("capture.file_closed")
        self._close_sources()
        self.counters()
        self.update(status=R.STOPPED, stop_reason=reason, capture_stop_time=self.clock.now(),
                    local_files=_existing(recorder.files))
        error: Optional[CaptureError] = recorder.error
        if error is None and reason in (R.INTERFACE_DOWN, R.CAPTURE_FAILED):
            detail = backend.failure or "the capture source stopped"
            error = CaptureFailedError(self.interface_problem or detail)
        if error is not None:
            self.update(status=R.ERROR, errors=(error.capture_error,), error_code=error.code,
                        error_message=error.message)

    def _close_sources(self) -> None:
        for closer in (self.backend, self.watch):
            if closer is not None:
                closer.close()

    def fail(self, exc: CaptureError) -> CaptureResult:
        """A failed start (or an unexpected error): close what was opened, once."""
        for closer in (self.recorder, self.backend, self.watch):
            try:
                if closer is not None:
                    closer.close()
            except Exception:  # noqa: BLE001 - already failing; keep the first error
                log.exception("cleanup after failure")
        files = _existing(self.recorder.files) if self.recorder else ()
        return self.update(status=R.ERROR, stop_reason=R.CAPTURE_FAILED,
                           errors=(exc.capture_error,), error_code=exc.code,
                           error_message=exc.message, local_files=files,
                           capture_stop_time=self.clock.now())


def _existing(paths: Iterable[str]) -> tuple[str, ...]:
    """Never name a file that is not there (a removed capture root takes them all)."""
    return tuple(path for path in paths if os.path.exists(path))


def run_capture(request: CaptureRequest, *, blob_store: Optional[BlockStager] = None,
                sas_token: Optional[str] = None, stop_event: Optional[threading.Event] = None,
                on_progress: Optional[Progress] = None, clock: Optional[Clock] = None,
                backend: str = "auto",
                netns: Optional[str] = None,
                progress_interval: float = PROGRESS_EVERY,
                stream_tuning: Optional[StreamTuning] = None,
                on_rotated: Optional[Callable[[str], None]] = None) -> CaptureResult:
    """Capture, write and upload one session; never raises for run-time failures.

    Long-running (up to the time limit plus the upload): call it in a worker.
    `on_progress(querystatus)` is called every `progress_interval` seconds and at the end.
    `netns` opens the capture sockets inside that network namespace (tests, containers).
    With a storagePath the capture is uploaded as it goes (streaming.py); `stream_tuning`
    lowers its thresholds (tests only: the handler keeps the defaults).
    `on_rotated(path)` is called (in the capture thread: it must not block) with each file a
    rotation closed (the CLI's -z).
    """
    session = _Session(request, stop_event or threading.Event(), on_progress,
                       SystemClock() if clock is None else clock, netns, progress_interval,
                       on_rotated)
    try:
        session.open(backend)
        if request.storage_path:
            session.stream(blob_store or BlobStore(), sas_token, stream_tuning)
        reason = session.capture()
        session.finish(reason)
    except CaptureError as exc:
        session.abandon_stream()
        session.fail(exc)
        session.report()
        return session.snapshot
    except Exception as exc:  # noqa: BLE001 - the handler gets a status, not a traceback
        log.exception("capture failed")
        session.abandon_stream()
        session.fail(CaptureError(f"internal error: {type(exc).__name__}: {exc}"))
        session.report()
        return session.snapshot
    if session.streamer is not None:
        finish_stream(session, session.parts()[1], session.streamer)
    session.report()
    crashpoint("capture.finished")
    return session.snapshot


def capture_files(request: CaptureRequest) -> list[str]:
    """The local files this capture (this name) wrote that are still on disk, oldest first:
    those of every start of the name, never those of another capture of the same path (a
    new start never overwrites a file: it writes `<stem>~2.cap`)."""
    return [path for claim in Owners(request.capture_root).claims(request.name)
            for path in claim.files()]


def delete_capture_files(request: CaptureRequest) -> list[str]:
    """action=delete: remove the files this capture wrote, never the blob; returns them.

    A capture with only a storagePath keeps its pending file only until it is uploaded:
    none left is the end of its life, not an error. Any other capture without a file is
    CaptureNotFoundError.
    """
    owners = Owners(request.capture_root)
    with owners.lock():
        claims = owners.claims(request.name)
        files = [path for claim in claims for path in claim.files()]
        for path in files:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        crashpoint("capture.delete.files_removed")
        for claim in claims:
            owners.release(claim)
    if not files and not (request.storage_path and not (request.file_path or
                                                         request.local_path)):
        raise CaptureNotFoundError(f"capture {request.name!r} has no local file: none of "
                                   f"the files it wrote under {request.capture_root} is left")
    return files
