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
from dataclasses import dataclass
from typing import Optional, Sequence

from capture_engine import pcaplib
from capture_engine.attach import Insn
from capture_engine.bpf import WHOLE_PACKET, compile_filters
from capture_engine.errors import InvalidSettingsError, ProblemList
from capture_engine.filters import CaptureFilter
from capture_engine.output import RECORD_HEADER, FdSink, OutputPlan, Recorder
from capture_engine.pcapng import PcapngFormat
from capture_engine.savefile import SaveFile

BATCH_BYTES = 256 * 1024
LIVE_ONLY = (("interface", "-i"), ("ring", "--ring"), ("netns", "--netns"))
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
    problems.raise_if_any()
    return OfflineJob(args.read, os.path.abspath(args.write) if args.write else None,
                      args.snaplen, args.max_bytes, args.count, args.pcapng, tuple(filters),
                      expression, mac)


def _mac(text: str, problems: ProblemList) -> Optional[bytes]:
    parts = text.replace("-", ":").split(":")
    if len(parts) == 6 and all(re.fullmatch(r"[0-9A-Fa-f]{1,2}", p) for p in parts):
        return bytes(int(p, 16) for p in parts)
    problems.add("--local-mac", f"not a MAC address: {text[:40]!r} (use aa:bb:cc:dd:ee:ff)",
                 InvalidSettingsError)
    return None


def program(job: OfflineJob) -> list[Insn]:
    """The live capture's program, direction-blind; its accept value is the snap length."""
    snaplen = min(job.snaplen or WHOLE_PACKET, WHOLE_PACKET)
    if job.expression:
        return pcaplib.compile_expression(job.expression, snaplen)
    return compile_filters(job.filters, snaplen, directional=False, sent_by=job.local_mac)


def _recorder(job: OfflineJob, source: SaveFile) -> Recorder:
    """The live capture's recorder and sinks: the same limits, classic pcap or pcapng."""
    assert job.output is not None
    plan = OutputPlan(job.output, min(job.snaplen or WHOLE_PACKET, WHOLE_PACKET),
                      job.max_bytes, 0, job.count)
    if job.pcapng:
        fmt = PcapngFormat(source.scan())
        recorder = Recorder(plan, FdSink(fmt.file_header), fmt)
    else:
        recorder = Recorder(plan, FdSink())
    recorder.start()
    return recorder


def run(job: OfflineJob) -> OfflineResult:
    """Read the file to its end (or to -c / the byte limit); a damaged file raises
    InputFileError after what came before it was written."""
    compiled = pcaplib.make_program(program(job))
    source = SaveFile(job.source)
    result = OfflineResult()
    recorder: Optional[Recorder] = None
    try:
        recorder = _recorder(job, source) if job.output else None
        _filter_into(source, compiled, recorder, job.count, result)
    finally:
        source.close()
        if recorder is not None:
            recorder.close()
            result.written, result.bytes_written = recorder.packets, recorder.bytes_written
            result.path = recorder.files[0] if recorder.files else None
    if recorder is not None and recorder.error is not None:
        raise recorder.error
    return result


def _filter_into(source: SaveFile, compiled: pcaplib.BpfProgram, recorder: Optional[Recorder],
                 count: Optional[int], result: OfflineResult) -> None:
    batch: list[bytes] = []
    size, interface = 0, -1
    names = source.scan() if recorder is not None else []

    def flush() -> None:
        if recorder is not None and batch:
            recorder.accept_batch(b"".join(batch), len(batch), names[interface])
            batch.clear()

    for packet in source.packets():
        result.read += 1
        keep = pcaplib.offline_filter(compiled, packet.data, packet.length)
        if not keep:
            continue
        result.matched += 1
        if recorder is None:
            if count is not None and result.matched >= count:
                result.stop_reason = "PacketCountReached"
                return
            continue
        if packet.interface != interface or size >= BATCH_BYTES:
            flush()
            if recorder.done:  # a limit: the rest of the file is not read
                break
            size, interface = 0, packet.interface
        data = packet.data[:keep]
        batch.append(RECORD_HEADER.pack(packet.ts_us // 1_000_000, packet.ts_us % 1_000_000,
                                        len(data), packet.length) + data)
        size += len(batch[-1])
        if count is not None and result.matched >= count:
            break
    flush()
    if recorder is not None and recorder.done_reason:
        result.stop_reason = recorder.done_reason
