"""CLI -r: re-filter a saved capture with the live capture's compiled filter, to a file or a count.

One compile path: the same BPF program as a live capture (capture_engine/bpf.py for Network
Watcher filters, libpcap for a tcpdump expression), run on each packet by libpcap's
interpreter (pcap_offline_filter). A saved file holds no packet direction, so a Network
Watcher filter matches with local = either end (the direction-blind form the libpcap backend
also uses): `(<filter sent>) or (<filter received>)` in tcpdump's words - unless the VM's
MAC is given, which makes every packet from it sent and every other received, as live.
"""
from __future__ import annotations

import argparse
import os
import re
import threading
from dataclasses import dataclass
from typing import Optional, Sequence

from capture_engine import pcaplib
from capture_engine.attach import Insn
from capture_engine.bpf import WHOLE_PACKET, compile_filters
from capture_engine.errors import (
    InvalidFilePathError,
    InvalidSettingsError,
    LocalFileError,
    ProblemList,
)
from capture_engine.filters import INBOUND, OUTBOUND, CaptureFilter, tcpdump_expression
from capture_engine.output import STOP_COUNT, OutputPlan, Recorder
from capture_engine.pcapfile import RECORD_HEADER, FdSink
from capture_engine.pcapng import PcapngFormat
from capture_engine.result import STOPPED_BY_REQUEST
from capture_engine.savefile import Packet, SaveFile
from capture_engine.settings import DEFAULT_TOTAL_BYTES
from plumbing.redact import redact_patterns

BATCH_BYTES = 256 * 1024
LIVE_ONLY = (("interface", "-i"), ("ring", "--ring"), ("netns", "--netns"),
             ("file_size_millions", "-C"), ("rotate_seconds", "-G"), ("filecount", "-W"),
             ("postrotate", "-z"), ("direction", "-Q"), ("buffer_size", "-B"),
             ("immediate_mode", "--immediate-mode"), ("time_limit", "--time-limit"))
END_OF_FILE = "EndOfFile"


@dataclass(frozen=True)
class OfflineJob:
    source: str
    output: Optional[str]
    snaplen: int
    max_bytes: int
    count: Optional[int]
    pcapng: bool
    filters: tuple[CaptureFilter, ...]
    expression: Optional[str]
    local_mac: Optional[bytes] = None  # the VM's: gives each packet its direction


@dataclass
class OfflineResult:
    read: int = 0
    matched: int = 0
    written: int = 0
    bytes_written: int = 0
    path: Optional[str] = None
    stop_reason: str = END_OF_FILE

    def summary(self) -> dict[str, object]:
        return {"packetsRead": self.read, "packetsMatched": self.matched,
                "packetsWritten": self.written, "bytesWritten": self.bytes_written,
                "localPath": self.path, "stopReason": self.stop_reason}


def job_from_args(args: argparse.Namespace, filters: Sequence[CaptureFilter],
                  problems: ProblemList) -> OfflineJob:
    """-r's flags (filters already parsed by the CLI); live-only flags are refused."""
    for dest, flag in LIVE_ONLY:
        if getattr(args, dest):
            problems.add(flag, "only for a live capture, not with -r", InvalidSettingsError)
    expression = " ".join(args.expression).strip() or None
    if expression and filters:
        problems.add("expression", "give either Network Watcher filters or a tcpdump "
                     "expression, not both")
    mac = _mac(args.local_mac, problems) if args.local_mac else None
    if mac is not None and expression:
        problems.add("--local-mac", "applies to Network Watcher filters; a tcpdump "
                     "expression says its own direction (ether src ...)", InvalidSettingsError)
    output = _output(args.write, problems)
    problems.raise_if_any()
    return OfflineJob(args.read, output, args.snaplen, args.max_bytes or DEFAULT_TOTAL_BYTES,
                      args.count, args.pcapng, tuple(filters), expression, mac)


def _output(write: Optional[str], problems: ProblemList) -> Optional[str]:
    """-w's file; '' or a folder names none (without -w: only count the matches)."""
    if write is None:
        return None
    if not write.strip():
        problems.add("-w", "empty: give the output file, or leave -w out to count the "
                     "matches", InvalidFilePathError)
    elif write.endswith("/") or os.path.isdir(write):
        problems.add("-w", f"{redact_patterns(write)!r} is a folder: give a file in it "
                     "(folder/out.pcap)", InvalidFilePathError)
    return os.path.abspath(write)


def _mac(text: str, problems: ProblemList) -> Optional[bytes]:
    parts = text.replace("-", ":").split(":")
    if len(parts) == 6 and all(re.fullmatch(r"[0-9A-Fa-f]{1,2}", p) for p in parts):
        return bytes(int(p, 16) for p in parts)
    problems.add("--local-mac", f"not a MAC address: {text[:40]!r} (use aa:bb:cc:dd:ee:ff)",
                 InvalidSettingsError)
    return None


def expression(job: OfflineJob) -> str:
    """tcpdump's words for what `program(job)` selects in a file ('' = everything)."""
    if job.expression or not job.filters:
        return job.expression or ""
    sent, received = (tcpdump_expression(job.filters, way) for way in (OUTBOUND, INBOUND))
    if not sent:
        return ""
    if job.local_mac is None:
        return f"({sent}) or ({received})"
    mac = ":".join(f"{b:02x}" for b in job.local_mac)
    return f"(ether src {mac} and ({sent})) or (not ether src {mac} and ({received}))"


def program(job: OfflineJob) -> list[Insn]:
    """The live capture's program, direction-blind; its accept value is the snap length."""
    snaplen = min(job.snaplen or WHOLE_PACKET, WHOLE_PACKET)
    if job.expression:
        return pcaplib.compile_expression(job.expression, snaplen)
    return compile_filters(job.filters, snaplen, directional=False, sent_by=job.local_mac)


def _recorder(job: OfflineJob, output: str, interfaces: Sequence[str]) -> Recorder:
    """The live capture's recorder and sinks: the same limits, classic pcap or pcapng."""
    plan = OutputPlan(output, min(job.snaplen or WHOLE_PACKET, WHOLE_PACKET),
                      job.max_bytes, 0, job.count)
    if job.pcapng:  # a batch names its interface by its number (_Batches)
        fmt = PcapngFormat(interfaces, [str(n) for n in range(len(interfaces))])
        recorder = Recorder(plan, FdSink(fmt.file_header), fmt)
    else:
        recorder = Recorder(plan, FdSink())
    try:
        os.makedirs(os.path.dirname(output) or ".", exist_ok=True)  # as a live capture does
        recorder.start()
    except OSError as exc:
        raise LocalFileError(f"cannot create {redact_patterns(output)}: "
                             f"{exc.strerror or exc}") from None
    return recorder


def run(job: OfflineJob, stop: Optional[threading.Event] = None) -> OfflineResult:
    """Read the file to its end (or to -c / the byte limit, or until `stop` is set); a
    damaged file raises InputFileError after what came before it was written."""
    compiled = pcaplib.make_program(program(job))
    source = SaveFile(job.source)
    result = OfflineResult()
    recorder: Optional[Recorder] = None
    try:
        names = source.scan()  # pcapng: its interface blocks only
        recorder = _recorder(job, job.output, names) if job.output else None
        batches = _Batches(recorder) if recorder is not None else None
        _filter_into(source, compiled, batches, job.count, result, stop)
    finally:
        source.close()
        if recorder is not None:
            recorder.close()
            result.written, result.bytes_written = recorder.packets, recorder.bytes_written
            result.path = recorder.files[0] if recorder.files else None
            result.stop_reason = recorder.done_reason or result.stop_reason
    if recorder is not None and recorder.error is not None:
        raise recorder.error
    return result


class _Batches:
    """Matches for the recorder in batches of one interface each, as a live backend hands
    them over (pcapng tags a batch with its interface)."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.records: list[bytes] = []
        self.size, self.interface = 0, -1

    def add(self, packet: Packet, keep: int) -> bool:
        """Queue the packet cut to `keep` bytes; False once the recorder is done."""
        if packet.interface != self.interface or self.size >= BATCH_BYTES:
            self.flush()
            if self.recorder.done:
                return False
            self.size, self.interface = 0, packet.interface
        data = packet.data[:keep]
        self.records.append(RECORD_HEADER.pack(packet.ts_us // 1_000_000,
                                               packet.ts_us % 1_000_000, len(data),
                                               packet.length) + data)
        self.size += len(self.records[-1])
        return True

    def flush(self) -> None:
        if self.records:
            self.recorder.accept_batch(b"".join(self.records), len(self.records),
                                       str(self.interface))
            self.records.clear()


def _filter_into(source: SaveFile, compiled: pcaplib.BpfProgram, batches: Optional[_Batches],
                 count: Optional[int], result: OfflineResult,
                 stop: Optional[threading.Event] = None) -> None:
    """Each packet through the program; the matches to `batches` - those before a damaged
    part of the file, or a stop request, too."""
    try:
        for packet in source.packets():
            if stop is not None and stop.is_set():
                result.stop_reason = STOPPED_BY_REQUEST
                break
            result.read += 1
            keep = pcaplib.offline_filter(compiled, packet.data, packet.length)
            if not keep:
                continue
            result.matched += 1
            if batches is not None and not batches.add(packet, keep):
                break  # a limit: the rest of the file is not read
            if count is not None and result.matched >= count:
                result.stop_reason = STOP_COUNT
                break
    finally:
        if batches is not None:
            batches.flush()
