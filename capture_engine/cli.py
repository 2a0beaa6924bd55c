"""`python -m capture_engine`: a tcpdump-like local capture with Network Watcher filters."""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import sys
import threading
import time
from typing import Callable, Optional, Sequence

from capture_engine import bpf, offline, pcaplib
from capture_engine.errors import (
    CaptureError,
    InvalidFilePathError,
    InvalidLimitError,
    InvalidSettingsError,
    ProblemList,
)
from capture_engine.filters import parse_filters, tcpdump_expression
from capture_engine.naming import Rotation
from capture_engine.postrotate import PostRotate
from capture_engine.progress import ProgressView
from capture_engine.seams import DIRECTIONS, SourceOptions
from capture_engine.session import BACKENDS, program_for, run_capture
from capture_engine.settings import (
    DEFAULT_FILE_SIZE,
    DEFAULT_TOTAL_BYTES,
    U32_MAX,
    CaptureRequest,
    RingSettings,
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
USAGE = """python -m capture_engine [ -d ] [ -B buffer_size ] [ -c count ] [ -C file_size ]
               [ -G rotate_seconds ] [ -i interface ] [ --immediate-mode ]
               [ -Q in|out|inout ] [ -s snaplen ] [ -w file ] [ -W filecount ]
               [ -z postrotate-command ] [ --time-limit seconds ] [ --max-bytes bytes ]
               [ --ring files --file-size bytes ] [ --filter json ] [ --protocol p ]
               [ --local-ip a ] [ --remote-ip a ] [ --local-port p ] [ --remote-port p ]
               [ --backend auto|libpcap|rawsocket ] [ --netns name ] [ --json ]
               [ expression ]"""
DEFAULT_TIME_LIMIT = 60.0     # without -C/-G: a capture stops after a minute
ROTATING_TIME_LIMIT = 604_800.0  # with -C/-G: a week (the most allowed), tcpdump stops at ^C
MILLION = 1_000_000  # -C is in millions of bytes, as tcpdump's


def _capture_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("capture (as tcpdump)")
    g.add_argument("-i", "--interface", action="append", default=[],
                   help="interface to capture on (repeat for several; default: every up, "
                        "non-loopback interface not enslaved to another, e.g. not a VF)")
    g.add_argument("-s", "--snaplen", type=int, default=0,
                   help="bytes to keep of each packet (0 = whole packet)")
    g.add_argument("-Q", "--direction", metavar="in|out|inout",
                   help="capture only packets received (in), sent (out), or both (default)")
    g.add_argument("-B", "--buffer-size", metavar="KiB",
                   help="the kernel capture buffer, in KiB (default 32768)")
    g.add_argument("--immediate-mode", action="store_true",
                   help="hand each packet over at once instead of per buffer block")
    g.add_argument("--backend", choices=BACKENDS, default="auto",
                   help="libpcap, or raw AF_PACKET sockets (auto: libpcap when installed)")
    g.add_argument("--netns", help="open the capture inside this network namespace")


def _output_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("output file and rotation (as tcpdump)")
    g.add_argument("-w", "--write", metavar="FILE", help="output pcap file (required)")
    g.add_argument("-C", dest="file_size_millions", metavar="file_size",
                   help="start a new file once the current one is larger than this many "
                        "millions of bytes: FILE, FILE1, FILE2...")
    g.add_argument("-G", dest="rotate_seconds", metavar="rotate_seconds",
                   help="start a new file on the first packet this many seconds after the "
                        "current one began; FILE is an strftime(3) pattern (with -C: each "
                        "interval's files numbered from none, or 0 with -W)")
    g.add_argument("-W", dest="filecount", metavar="filecount",
                   help="with -C: a ring of this many files FILE0... (leading zeros); with "
                        "-G alone: exit after this many files")
    g.add_argument("-z", dest="postrotate", metavar="postrotate-command",
                   help="run 'postrotate-command FILE' on each file a rotation closed, "
                        "beside the capture (e.g. -z gzip); a failure is a warning")


def _stop_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("stop conditions")
    g.add_argument("-c", "--count", type=int, help="stop after this many packets")
    g.add_argument("--time-limit", type=float, metavar="SECONDS",
                   help=f"stop after this many seconds (default {DEFAULT_TIME_LIMIT:g}; "
                        "with -C/-G a week: until Ctrl-C)")
    g.add_argument("--max-bytes", type=int, metavar="BYTES",
                   help="stop before writing past this many bytes (default 1 GiB; with "
                        "-C/-G: all files together, no default)")


def _ring_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("the extension's continuous capture (instead of -C/-G/-W)")
    g.add_argument("--ring", type=int, metavar="FILES",
                   help="keep a ring of this many files FILE_00001.cap... (oldest deleted)")
    g.add_argument("--file-size", type=int, default=DEFAULT_FILE_SIZE, metavar="BYTES",
                   help="with --ring: no file grows past this many bytes (default 100 MiB)")


def _filter_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("filters")
    g.add_argument("expression", nargs="*",
                   help="a tcpdump filter expression instead of Network Watcher filters")
    g.add_argument("--filter", action="append", default=[], metavar="JSON",
                   help='a Network Watcher filter as JSON, e.g. \'{"protocol": "TCP", '
                        '"remotePort": "80;443"}\' (repeat: filters are OR\'ed)')
    for flag, field in (("--protocol", "protocol"), ("--local-ip", "localIPAddress"),
                        ("--remote-ip", "remoteIPAddress"), ("--local-port", "localPort"),
                        ("--remote-port", "remotePort")):
        g.add_argument(flag, dest=field, help=f"one filter's {field} (Network Watcher syntax)")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m capture_engine", usage=USAGE,
        description="Capture packets to classic pcap files, like tcpdump -w, with Network "
                    "Watcher filters and exact byte and time limits.")
    _capture_flags(p)
    _output_flags(p)
    _stop_flags(p)
    _ring_flags(p)
    _filter_flags(p)
    g = p.add_argument_group("reporting")
    g.add_argument("--json", action="store_true", help="print the final status as JSON")
    g.add_argument("-d", "--print-filter", action="store_true",
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


def _whole(problems: ProblemList, flag: str, text: Optional[str], low: int,
           high: int) -> int:
    """A flag's whole number in low..high (0 when absent or wrong: the problem is listed)."""
    if text is None:
        return 0
    # isdecimal, not isdigit: '²' is a digit int() refuses
    value = int(text) if text.strip().isdecimal() else None
    if value is None or not low <= value <= high:
        problems.add(flag, f"{text!r} is not a whole number in {low} - {high:,}",
                     InvalidLimitError)
        return 0
    return value


def _check_numbers(args: argparse.Namespace, rotating: bool, problems: ProblemList) -> None:
    """The numbers given (an absent one is fine: it takes its default)."""
    checks = (("--snaplen", args.snaplen, 0, U32_MAX),
              ("--max-bytes", args.max_bytes, 41, 2 ** 62 if rotating else U32_MAX),
              ("--time-limit", args.time_limit, 0.001, ROTATING_TIME_LIMIT),
              ("--count", args.count, 1, U32_MAX),
              ("--ring", args.ring, 1, 10_000),
              ("--file-size", args.file_size, 41, U32_MAX))
    for flag, value, low, high in checks:
        if value is not None and not low <= value <= high:
            problems.add(flag, f"{value} is out of range {low} - {high}", InvalidLimitError)


def _rotation(args: argparse.Namespace, path: str, problems: ProblemList) -> Optional[Rotation]:
    """-C/-G/-W as tcpdump's rotation; -W and -z need -C or -G, --ring excludes them."""
    size = _whole(problems, "-C", args.file_size_millions, 1, 1_000_000)
    seconds = _whole(problems, "-G", args.rotate_seconds, 1, 2_147_483_647)
    count = _whole(problems, "-W", args.filecount, 1, 1_000_000)
    rotating = args.file_size_millions is not None or args.rotate_seconds is not None
    for flag, given in (("-W", args.filecount), ("-z", args.postrotate)):
        if given is not None and not rotating:
            problems.add(flag, f"{flag} works with -C or -G: give one of them, or drop {flag}")
    if args.postrotate is not None and shutil.which(args.postrotate) is None:
        problems.add("-z", f"{args.postrotate!r} is not a program on PATH or an executable "
                     "file: -z takes one program, without arguments (tcpdump's); for "
                     "arguments, name a script that runs the command")
    if args.ring and (rotating or args.filecount is not None):
        problems.add("--ring", "--ring is the extension's ring: use it or tcpdump's "
                     "-C/-G/-W, not both")
    if not rotating or not (size or seconds):
        return None
    rotation = Rotation(path, size * MILLION, seconds, count, args.max_bytes)
    try:
        rotation.name(int(time.time()))
    except ValueError as exc:
        problems.add("-w", f"{path!r} is not a valid strftime(3) pattern for -G: {exc}",
                     InvalidFilePathError)
    return rotation


def _source(args: argparse.Namespace, problems: ProblemList) -> SourceOptions:
    """-Q, -B (KiB, as tcpdump), --immediate-mode."""
    given = args.direction
    direction = "inout" if given is None else given.lower()  # tcpdump takes -Q IN too
    if direction not in DIRECTIONS:
        problems.add("-Q", f"must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
    buffer_kib = _whole(problems, "-B", args.buffer_size, 1, 2_097_151)  # an int of bytes
    return SourceOptions(direction if direction in DIRECTIONS else "inout",
                         buffer_kib * 1024 or None, args.immediate_mode)


def build_request(args: argparse.Namespace) -> CaptureRequest:
    """The CLI's flags as a CaptureRequest; CaptureSettingsError lists every problem."""
    problems = ProblemList()
    filters = parse_filters(_filters(args, problems), "filters", problems)
    expression = " ".join(args.expression).strip() or None
    if expression and filters:
        problems.add("expression", "give either Network Watcher filters or a tcpdump "
                     "expression, not both")
    if not args.write and not args.print_filter:
        problems.add("-w", "give the output file with -w FILE", InvalidFilePathError)
    elif args.write and (args.write.endswith(os.sep) or os.path.isdir(args.write)):
        problems.add("-w", f"{args.write!r} is a folder: name the file to write in it",
                     InvalidFilePathError)
    path = os.path.abspath(args.write or "capture.cap")
    rotation = _rotation(args, path, problems)
    rotating = args.file_size_millions is not None or args.rotate_seconds is not None
    _check_numbers(args, rotating, problems)
    source = _source(args, problems)
    problems.raise_if_any()
    time_limit = args.time_limit if args.time_limit is not None else \
        ROTATING_TIME_LIMIT if rotation else DEFAULT_TIME_LIMIT
    ring = RingSettings(args.ring, args.file_size, math.ceil(time_limit)) if args.ring else None
    return CaptureRequest(
        name=os.path.splitext(os.path.basename(path))[0] or "capture",
        bytes_per_packet=args.snaplen, total_bytes=args.max_bytes or DEFAULT_TOTAL_BYTES,
        time_limit=time_limit, file_path=None if ring else path,
        local_path=path if ring else None, filters=filters, ring=ring,
        interfaces=tuple(args.interface), capture_root=os.path.dirname(path),
        bpf_expression=expression, packet_count=args.count, pcapng=args.pcapng,
        rotation=rotation, source=source)


def _print_filter(request: CaptureRequest) -> None:
    expression = request.bpf_expression or tcpdump_expression(request.filters)
    print(f"tcpdump expression: {expression or '(everything)'}")
    print(bpf.render(program_for(request)))


def _read_file(args: argparse.Namespace) -> int:
    """-r FILE (offline.py): the same filters and output limits, on a saved capture."""
    problems = ProblemList()
    filters = parse_filters(_filters(args, problems), "filters", problems)
    _check_numbers(args, False, problems)
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


def _as_given(post: PostRotate, written: str) -> Callable[[str], None]:
    """-z gets the file named as -w named it (relative when it was), as tcpdump's does."""
    if os.path.isabs(written):
        return post.submit
    return lambda path: post.submit(os.path.relpath(path))


def _warn(text: str) -> None:
    """A problem that does not stop the capture (a -z command that failed)."""
    print(f"warning: {text}", file=sys.stderr, flush=True)


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
    post = PostRotate(args.postrotate, _warn) if args.postrotate else None
    with view:
        result = run_capture(request, stop_event=stop, on_progress=view.update,
                             backend=args.backend, netns=args.netns, progress_interval=0.5,
                             on_rotated=_as_given(post, args.write) if post else None)
    if post is not None:
        post.close()
    status: dict[str, object] = result.querystatus()
    if args.json:
        print(json.dumps(status, indent=2))
    elif sys.stderr.isatty():
        view.summary(status)
    if not result.ok:
        print(f"error {result.error_code}: {result.error_message}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK
