"""`python -m capture_engine`: a tcpdump-like local capture with Network Watcher filters."""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from typing import Optional, Sequence

from capture_engine import bpf, offline, pcaplib
from capture_engine.errors import (
    CaptureError,
    InvalidFilePathError,
    InvalidSettingsError,
    ProblemList,
)
from capture_engine.filters import parse_filters, tcpdump_expression
from capture_engine.progress import ProgressView
from capture_engine.session import BACKENDS, program_for, run_capture
from capture_engine.settings import (
    DEFAULT_FILE_SIZE,
    DEFAULT_TOTAL_BYTES,
    U32_MAX,
    CaptureRequest,
    RingSettings,
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m capture_engine",
        description="Capture packets to a classic pcap file, like tcpdump, with Network "
                    "Watcher filters and exact byte and time limits.")
    p.add_argument("-i", "--interface", action="append", default=[],
                   help="interface to capture on (repeat for several; default: every up, "
                        "non-loopback interface not enslaved to another, e.g. not a VF)")
    p.add_argument("-w", "--write", metavar="FILE", help="output pcap file (required)")
    p.add_argument("-s", "--snaplen", type=int, default=0,
                   help="bytes to keep of each packet (0 = whole packet)")
    p.add_argument("-c", "--count", type=int, help="stop after this many packets")
    p.add_argument("-G", "--time-limit", type=float, default=60.0, metavar="SECONDS",
                   help="stop after this many seconds (default 60)")
    p.add_argument("-C", "--max-bytes", type=int, default=DEFAULT_TOTAL_BYTES, metavar="BYTES",
                   help="the file never grows past this many bytes (default 1 GiB)")
    p.add_argument("--ring", type=int, metavar="FILES",
                   help="continuous capture: keep a ring of this many files")
    p.add_argument("--file-size", type=int, default=DEFAULT_FILE_SIZE, metavar="BYTES",
                   help="with --ring: size at which the next file starts (default 100 MiB)")
    p.add_argument("--filter", action="append", default=[], metavar="JSON",
                   help='a Network Watcher filter as JSON, e.g. \'{"protocol": "TCP", '
                        '"remotePort": "80;443"}\' (repeat: filters are OR\'ed)')
    for flag, field in (("--protocol", "protocol"), ("--local-ip", "localIPAddress"),
                        ("--remote-ip", "remoteIPAddress"), ("--local-port", "localPort"),
                        ("--remote-port", "remotePort")):
        p.add_argument(flag, dest=field, help=f"one filter's {field} (Network Watcher syntax)")
    p.add_argument("expression", nargs="*",
                   help="a tcpdump filter expression instead of Network Watcher filters")
    p.add_argument("--backend", choices=BACKENDS, default="auto")
    p.add_argument("--netns", help="open the capture inside this network namespace")
    p.add_argument("--json", action="store_true", help="print the final status as JSON")
    p.add_argument("-d", "--print-filter", action="store_true",
                   help="print the equivalent tcpdump expression and BPF program, then exit")
    _file_formats(p)
    return p


def _file_formats(p: argparse.ArgumentParser) -> None:
    """Output and input files other than a live classic pcap (offline.py, pcapng.py)."""
    files = p.add_argument_group("files")
    files.add_argument("-r", "--read", metavar="FILE",
                       help="re-filter a saved pcap or pcapng file instead of capturing: to "
                            "-w, or print how many packets match")
    files.add_argument("--local-mac", metavar="MAC",
                       help="with -r: the VM's MAC; a packet from it was sent (local = "
                            "source), any other received (default: local is either end)")
    files.add_argument("--pcapng", action="store_true",
                       help="write pcapng: one interface block per NIC, each packet names "
                            "the NIC that saw it (the byte limits count its larger blocks)")


def _filters(args: argparse.Namespace, problems: ProblemList) -> list[object]:
    """The filters as given (JSON values): parse_filters says what is wrong with them."""
    raw: list[object] = []
    for n, text in enumerate(args.filter):
        try:
            raw.append(json.loads(text))
        except ValueError as exc:
            problems.add(f"--filter[{n}]", f"not valid JSON: {exc}")
    single = {k: getattr(args, k) for k in ("protocol", "localIPAddress", "remoteIPAddress",
                                            "localPort", "remotePort") if getattr(args, k)}
    if single:
        raw.append(single)
    return raw


def _check_numbers(args: argparse.Namespace, problems: ProblemList) -> None:
    from capture_engine.errors import InvalidLimitError

    checks = (("--snaplen", args.snaplen, 0, U32_MAX), ("--max-bytes", args.max_bytes, 41, U32_MAX),
              ("--time-limit", args.time_limit, 0.001, 604_800),
              ("--count", args.count if args.count is not None else 1, 1, U32_MAX),
              ("--ring", args.ring if args.ring is not None else 1, 1, 10_000),
              ("--file-size", args.file_size, 41, U32_MAX))
    for flag, value, low, high in checks:
        if not low <= value <= high:
            problems.add(flag, f"{value} is out of range {low} - {high}", InvalidLimitError)


def build_request(args: argparse.Namespace) -> CaptureRequest:
    """The CLI's flags as a CaptureRequest; CaptureSettingsError lists every problem."""
    problems = ProblemList()
    filters = parse_filters(_filters(args, problems), "filters", problems)
    expression = " ".join(args.expression).strip() or None
    if expression and filters:
        problems.add("expression", "give either Network Watcher filters or a tcpdump "
                     "expression, not both")
    _check_numbers(args, problems)
    if not args.write and not args.print_filter:
        problems.add("-w", "give the output file with -w FILE", InvalidFilePathError)
    problems.raise_if_any()
    path = os.path.abspath(args.write or "capture.cap")
    ring = RingSettings(args.ring, args.file_size, int(args.time_limit)) if args.ring else None
    return CaptureRequest(
        name=os.path.splitext(os.path.basename(path))[0] or "capture",
        bytes_per_packet=args.snaplen, total_bytes=args.max_bytes, time_limit=args.time_limit,
        file_path=None if ring else path, local_path=path if ring else None, filters=filters,
        ring=ring, interfaces=tuple(args.interface), capture_root=os.path.dirname(path),
        bpf_expression=expression, packet_count=args.count, pcapng=args.pcapng)


def _print_filter(request: CaptureRequest) -> None:
    expression = request.bpf_expression or tcpdump_expression(request.filters)
    print(f"tcpdump expression: {expression or '(everything)'}")
    print(bpf.render(program_for(request)))


def _read_file(args: argparse.Namespace) -> int:
    """-r FILE (offline.py): the same filters and output limits, on a saved capture."""
    problems = ProblemList()
    filters = parse_filters(_filters(args, problems), "filters", problems)
    _check_numbers(args, problems)
    try:
        job = offline.job_from_args(args, filters, problems)
        if args.print_filter:
            print(f"tcpdump expression: {offline.expression(job) or '(everything)'}")
            print(bpf.render(offline.program(job)))
            return EXIT_OK
    except CaptureError as exc:
        print(f"error {exc.code}: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())  # as live: a signal is a stop request
    try:
        result = offline.run(job, stop)
    except CaptureError as exc:
        print(f"error {exc.code}: {exc.message}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, InvalidSettingsError) else EXIT_FAILED
    if args.json:
        print(json.dumps(result.summary(), indent=2))
    elif not job.output:
        print(f"{result.matched} of {result.read} packets match")
    return EXIT_OK


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    if args.read is not None:  # -r '' too: a missing input, not a missing -w
        return _read_file(args)
    if args.local_mac and not args.read:
        print(f"error {InvalidSettingsError.code}: --local-mac: only with -r", file=sys.stderr)
        return EXIT_USAGE
    try:
        request = build_request(args)
        if args.print_filter:
            _print_filter(request)
            return EXIT_OK
        if request.bpf_expression:
            pcaplib.compile_expression(request.bpf_expression, 65535)  # fail early, coded
    except CaptureError as exc:
        print(f"error {exc.code}: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())  # a signal is a stop request
    view = ProgressView(request.effective_time_limit, enabled=sys.stderr.isatty() and
                        not args.json)
    with view:
        result = run_capture(request, stop_event=stop, on_progress=view.update,
                             backend=args.backend, netns=args.netns, progress_interval=0.5)
    status: dict[str, object] = result.querystatus()
    if args.json:
        print(json.dumps(status, indent=2))
    elif sys.stderr.isatty():
        view.summary(status)
    if not result.ok:
        print(f"error {result.error_code}: {result.error_message}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK
