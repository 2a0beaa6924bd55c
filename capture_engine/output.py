"""The recorder: exact byte and packet limits, the ring of files, tcpdump rotation, and the
drain-time cutoff, in the file's record format (pcapfile.py)."""
from __future__ import annotations

import contextlib
import errno
import os
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Optional

from capture_engine.errors import CaptureFileLostError, InvalidLimitError, LocalFileError
from capture_engine.naming import Rotation, free_base, ring_path
from capture_engine.owners import Claim, Owners
from capture_engine.pcapfile import HEADER_SIZE, PCAP, RecordFormat, trim_to_records
from capture_engine.seams import Sink
from plumbing.crashpoints import crashpoint

STOP_BYTES = "ByteLimitReached"
STOP_COUNT = "PacketCountReached"
STOP_FILES = "FileCountReached"  # tcpdump -G with -W: the W-th file is done
MAX_LISTED = 1000  # tcpdump rotation: the newest files named in the status (none deleted)


@dataclass(frozen=True)
class OutputPlan:
    """Where records go and the limits they obey."""

    path: str                       # the file, or the ring's base name (…_00001.cap)
    snaplen: int
    max_file_bytes: int             # classic: totalBytesPerSession; ring: fileSizeInBytes
    ring_files: int = 0             # 0 = one classic file
    max_packets: Optional[int] = None
    owner: Optional[str] = None     # the capture's name: claim the files for it (owners.py)
    capture_root: str = ""          # where the claims are kept
    rotation: Optional[Rotation] = None  # the CLI's tcpdump -C/-G/-W (then ring_files is 0)

    def owners(self) -> Optional[Owners]:
        return Owners(self.capture_root) if self.owner is not None else None

    def file_path(self, seq: int, base: Optional[str] = None) -> str:
        base = base or self.path
        return ring_path(base, seq) if self.ring_files else base


class Recorder:
    """Applies the byte/packet limits, file rotation and the stop-time cutoff to records.

    Its memory does not grow with the number of rotations: it keeps the ring's files (at
    most fileCount names) and counters, nothing per deleted file.
    """

    def __init__(self, plan: OutputPlan, sink: Sink, fmt: RecordFormat = PCAP,
                 wall: Callable[[], float] = time.time) -> None:
        self.plan = plan
        self.sink = sink
        self.format = fmt
        self._wall = wall  # -G reads the time here (tests drive it)
        self._interval = self._size_count = self._time_rotations = 0  # tcpdump rotation
        self._header = HEADER_SIZE  # each file's header bytes, once the first is open
        self.base = plan.path  # the name actually used (free_base: never overwrite)
        self.files: deque[str] = deque()
        self.deleted_count = 0
        self.seq = 0
        self.packets = 0
        self.bytes_written = 0
        self.cutoff_us: Optional[int] = None
        self.done_reason: Optional[str] = None
        self.error: Optional[LocalFileError] = None
        self._good = 0  # file offset known to be on disk at a record boundary
        self._current: Optional[tuple[str, int, int]] = None  # path, st_dev, st_ino
        self.claim: Optional[Claim] = None
        # Told of each file a rotation closed, not of the last (streaming.py uploads it; the
        # CLI's -z runs on it). A retired ring file `keep` wants (streaming: not uploaded yet)
        # is left for it to delete once uploaded.
        self.on_closed: Optional[Callable[[str], None]] = None
        self.keep: Optional[Callable[[str], bool]] = None

    @property
    def complete_offset(self) -> int:
        """The current file's size up to its last complete, flushed record."""
        return self._good

    @property
    def done(self) -> bool:
        return self.done_reason is not None or self.error is not None

    def start(self) -> None:
        """Pick a name no file uses, claim it for the capture (write ahead: the claim is on
        disk before the file), create the first file - all under the owners' lock."""
        ring, owners = bool(self.plan.ring_files), self.plan.owners()
        rotation = self.plan.rotation
        if rotation is not None:  # the CLI: tcpdump's names, no claims, overwrite like it
            self._interval = int(self._wall())
            self._next_file(rotation.name(self._interval))
            crashpoint("capture.file_opened")
            self._check_header_room()
            return
        with owners.lock() if owners else contextlib.nullcontext():
            self.base = free_base(self.plan.path, ring)
            if owners is not None:
                self.claim = owners.claim(str(self.plan.owner), self.base, ring)
                crashpoint("capture.claimed")
            self._next_file()
        crashpoint("capture.file_opened")
        self._check_header_room()

    def _check_header_room(self) -> None:
        if self.format is not PCAP and self._header + self.format.min_record >= \
                self.plan.max_file_bytes:
            self.close()
            self.drop_files()
            raise InvalidLimitError(
                f"a {self.format.name} file of these interfaces starts with {self._header} "
                f"bytes of headers: the byte limit ({self.plan.max_file_bytes}) must be over "
                f"{self._header + self.format.min_record}")

    def drop_files(self) -> None:
        """Remove the files (a pending file once uploaded) and give up their claim."""
        owners = self.plan.owners()
        with owners.lock() if owners else contextlib.nullcontext():
            for path in self.files:
                with contextlib.suppress(OSError):
                    os.unlink(path)
            if owners is not None and self.claim is not None:
                owners.release(self.claim)

    def _next_file(self, path: Optional[str] = None) -> None:
        """Close the current file (if any) and open the next: the ring's next number, or
        `path` (tcpdump rotation), which replaces any file of that name as tcpdump does."""
        rotating = bool(self.files)
        self._current = None  # check_file: no file while they change
        if rotating:
            self.sink.close()
            # A name reused at once (-W 1, -G without a time format) replaces the closed file
            # now: a -z command would get the new live file (and gzip would delete it).
            if self.on_closed is not None and path != self.files[-1]:
                self.on_closed(self.files[-1])
        self.seq += 1
        if path is None:
            path = self.plan.file_path(self.seq, self.base)
        else:
            self._forget(path)
        self.sink.open(path, self.plan.snaplen)
        self._header = self.sink.offset()
        stat = os.stat(path)
        self._current = (path, stat.st_dev, stat.st_ino)  # before any file is deleted below
        self.files.append(path)
        self.bytes_written += self._header
        self._good = self._header
        while self.plan.ring_files and len(self.files) > self.plan.ring_files:
            old = self.files.popleft()
            self.deleted_count += 1
            if self.keep is not None and self.keep(old):
                continue
            try:
                os.unlink(old)
            except FileNotFoundError:
                pass
        if rotating:
            crashpoint("capture.rotated")

    def _forget(self, path: str) -> None:
        """tcpdump reuses a name (-W wraps, -G without a time format): the old file goes."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        with contextlib.suppress(ValueError):
            self.files.remove(path)
        while len(self.files) >= MAX_LISTED:
            self.files.popleft()  # only no longer named; tcpdump rotation deletes nothing

    def check_file(self) -> None:
        """Called from another thread: the file being written must still be where it was
        opened; if it (or its folder) was removed, every packet written to it is lost."""
        current = self._current
        if current is None or self.done:
            return
        path, dev, ino = current
        try:
            stat = os.stat(path)
            if (stat.st_dev, stat.st_ino) == (dev, ino):
                return
        except FileNotFoundError:
            pass
        except OSError:
            return
        self.error = self._lost(path)

    def _lost(self, path: str) -> CaptureFileLostError:
        folder = os.path.dirname(path) or "."
        why = f"its folder {folder} was removed" if not os.path.isdir(folder) else \
            "the file was deleted or replaced"
        return CaptureFileLostError(
            f"the capture file {path} was removed while the capture was writing it ({why}): "
            f"the packets written to it are lost; the capture stopped after "
            f"{self.packets} packets")

    def after_direct_batch(self, start: int, count: int) -> None:
        """Records were written straight to the sink (libpcap's pcap_dump) since `start`."""
        try:
            end = self.sink.offset()
            if self.cutoff_us is None and self._fits(start, end - start, count):
                self.sink.flush()
                self._count(count, end - start, end)
                return
            self.sink.flush()
            data = self.sink.read(start, end)
            self.sink.truncate(start)
        except OSError as exc:
            self._fail(exc)
            return
        self.accept_batch(data)

    def accept_batch(self, data: bytes, count: Optional[int] = None,
                     interface: Optional[str] = None) -> None:
        """Append complete records (classic pcap, from `interface`), cutting at the limits
        and the stop time; counted in the file's own format."""
        if self.done or not len(data):
            return
        data = self.format.encode(data, interface)
        if self.cutoff_us is not None:
            data = b"".join(bytes(data[a:b]) for a, b, ts in self.format.records(data)
                            if ts <= self.cutoff_us)
            count = None
        try:
            if count is not None and self._fits(self.sink.offset(), len(data), count):
                self.sink.append(data)
                self.sink.flush()
                self._count(count, len(data), self.sink.offset())
            elif self.plan.rotation is not None:
                self._append_rotating(data, self.plan.rotation)
            else:
                self._append_slowly(data)
        except OSError as exc:
            self._fail(exc)

    def _fits(self, offset: int, size: int, count: int) -> bool:
        """`count` records of `size` bytes go whole into the file at `offset`: no limit,
        count or rotation falls inside them."""
        if self.plan.max_packets is not None and self.packets + count > self.plan.max_packets:
            return False
        rotation = self.plan.rotation
        if rotation is None:
            return offset + size <= self.plan.max_file_bytes
        total = rotation.max_total_bytes
        return not self._time_due(rotation) and \
            (not rotation.file_bytes or offset + size <= rotation.file_bytes) and \
            (total is None or self.bytes_written + size <= total)

    def _time_due(self, rotation: Rotation) -> bool:
        return bool(rotation.seconds) and int(self._wall()) - self._interval >= rotation.seconds

    def _append_rotating(self, data: bytes, rotation: Rotation) -> None:
        """tcpdump's order for each record: the time rotation (once per batch: tcpdump reads
        the clock per packet, all of a batch arrive together), the size rotation, then the
        write; and ours: the packet count and --max-bytes over all files."""
        if self._time_due(rotation):
            self._interval, self._time_rotations = int(self._wall()), self._time_rotations + 1
            if rotation.ends_at(self._time_rotations):
                self.sink.close()
                if self.on_closed is not None:
                    self.on_closed(self.files[-1])
                self.done_reason = STOP_FILES
                return
            first = next(iter(self.format.records(data)), (0, 0, 0))
            if not self._total_room(rotation, first[1] - first[0], True):
                return
            self._size_count = 0
            self._next_file(rotation.name(self._interval))
        for a, b, _ in self.format.records(data):
            rotate = bool(rotation.file_bytes) and self.sink.offset() > rotation.file_bytes
            if not self._total_room(rotation, b - a, rotate) or self._count_full(0) or \
                    self.done:
                break
            if rotate:
                self._size_count = rotation.wrap(self._size_count)
                self._next_file(rotation.name(self._interval, self._size_count))
            self.sink.append(data[a:b])
            self._count(1, b - a, self.sink.offset())
        self.sink.flush()

    def _total_room(self, rotation: Rotation, size: int, new_file: bool) -> bool:
        """--max-bytes over all files has room for a record of `size` (after a new file's
        header when it starts one: never a header-only file past the cap); else stop."""
        total = rotation.max_total_bytes
        need = size + (self._header if new_file else 0)
        if total is not None and self.bytes_written + need > total:
            self.done_reason = STOP_BYTES
            return False
        return True

    def _append_slowly(self, data: bytes) -> None:
        pending = list(self.format.records(data))
        while pending and not self.done:
            room = self.plan.max_file_bytes - self.sink.offset()
            take, used = 0, 0
            for a, b, _ in pending:
                if used + (b - a) > room or self._count_full(take):
                    break
                take, used = take + 1, used + (b - a)
            if take:
                first = pending[0][0]
                self.sink.append(data[first:first + used])
                self.sink.flush()
                self._count(take, used, self.sink.offset())
                pending = pending[take:]
            if not pending or self.done:
                return
            if self._count_full(0):
                self.done_reason = STOP_COUNT
            elif not self.plan.ring_files:
                self.done_reason = STOP_BYTES
            elif self.sink.offset() == self._header:
                pending = pending[1:]  # one record larger than an empty file: cannot be kept
            else:
                self._next_file()

    def _count_full(self, extra: int) -> bool:
        limit = self.plan.max_packets
        return limit is not None and self.packets + extra >= limit

    def _count(self, count: int, size: int, offset: int) -> None:
        self.packets += count
        self.bytes_written += size
        self._good = offset
        if self.plan.max_packets is not None and self.packets >= self.plan.max_packets:
            self.done_reason = STOP_COUNT
        elif not self.plan.ring_files and self.plan.rotation is None and \
                offset + self.format.min_record > self.plan.max_file_bytes:
            self.done_reason = STOP_BYTES  # not even an empty record would fit

    def _fail(self, exc: OSError) -> None:
        """Keep what reached the disk, cut at the last complete record, and stop."""
        path = self.files[-1] if self.files else self.plan.path
        kept = self._good
        try:
            self.sink.close()
        except OSError:
            pass
        if not os.path.exists(path):
            self.error = self._lost(path)
            return
        try:
            kept, extra = trim_to_records(path, self._good, self.format.records)
            self.packets += extra
            self.bytes_written += kept - self._good
        except OSError:
            pass
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
        what = "the disk is full" if full else f"writing failed: {exc.strerror or exc}"
        self.error = LocalFileError(
            f"{what} after {self.bytes_written} bytes; the {self.packets} packets written "
            f"so far are kept in {path} ({kept} bytes)", disk_full=full)

    def close(self) -> None:
        try:
            self.sink.close()
        except OSError as exc:
            if self.error is None:
                self._fail(exc)
