"""Command line: a table in the manner of mtr, or exactly the answer JSON with --json."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Optional

from connectivity import errors as E
from connectivity.check import run_check
from connectivity.model import ConnectivityResult
from connectivity.request import DEFAULT_PROBES, MAX_PROBES, parse_request


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m connectivity",
        description="Check whether this VM reaches DESTINATION, and if not, why.")
    parser.add_argument("destination", nargs="?", help="IP address, host name or http(s) URL")
    parser.add_argument("--settings", help="the connectivityCheck object as JSON (instead of "
                        "DESTINATION and the options below), exactly as the handler passes it")
    parser.add_argument("--port", type=int, help="destination port (Http 80, Https 443)")
    parser.add_argument("--protocol", help="tcp (default), http, https or icmp")
    parser.add_argument("--source-port", type=int, help="local port to bind")
    parser.add_argument("--probes", type=int,
                        help=f"number of probes, 1-{MAX_PROBES} (default {DEFAULT_PROBES})")
    parser.add_argument("--ip-version", choices=("IPv4", "IPv6"), help="preferred IP version")
    parser.add_argument("--valid-status", type=int, action="append",
                        help="valid HTTP status code (repeatable)")
    parser.add_argument("--json", action="store_true", help="print exactly the answer JSON")
    return parser


def settings_from(args: argparse.Namespace) -> dict[str, Any]:
    """The CLI builds the same connectivityCheck object the handler receives."""
    obj: dict[str, Any] = {"destination": {"address": args.destination}}
    if args.port is not None:
        obj["destination"]["port"] = args.port
    if args.protocol is not None:
        obj["protocol"] = args.protocol
    if args.source_port is not None:
        obj["source"] = {"port": args.source_port}
    if args.probes is not None:
        obj["probes"] = args.probes
    if args.ip_version:
        obj["preferredIPVersion"] = args.ip_version
    if args.valid_status:
        obj["protocolConfiguration"] = {"HTTPConfiguration": {
            "validStatusCodes": args.valid_status}}
    return obj


def main(argv: Optional[list[str]] = None) -> int:
    """Exit 0 Reachable/Degraded; otherwise the error or result code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if (args.settings is None) == (args.destination is None):
        parser.error("give either DESTINATION or --settings")
    try:
        obj = json.loads(args.settings) if args.settings is not None else settings_from(args)
    except ValueError as exc:
        print(f"error {E.InvalidSettings.code}: --settings is not JSON: {exc}", file=sys.stderr)
        return E.InvalidSettings.code
    try:
        request = parse_request(obj)
    except E.ConnectivityRequestError as exc:
        print(f"error {exc.code}: {exc.message}", file=sys.stderr)
        return exc.code
    result = run_check(request)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        render(result)
    return 0 if result.succeeded else result.status_code


def render(result: ConnectivityResult) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(result.summary))
    for name in ("Hop", "Type", "Address", "Loss%", "Sent", "Best", "Avg", "Worst"):
        table.add_column(name, justify="right" if name in ("Loss%", "Sent") else "left")
    for i, hop in enumerate(result.hops):
        low, avg, high = hop.stats.summary()
        cells = [f"{v:.2f}" if v is not None else "-" for v in (low, avg, high)]
        table.add_row(str(i), hop.type, hop.address or "*",
                      f"{hop.stats.loss_percent:.0f}" if hop.stats.sent else "-",
                      str(hop.stats.sent) if hop.stats.sent else "-", *cells)
    console = Console()
    console.print(table)
    lat = result.latencies_ms
    if lat:
        console.print(f"probes: {result.probes_sent} sent, {result.probes_failed} failed; "
                      f"latency min/avg/max {min(lat):.3f}/{sum(lat) / len(lat):.3f}/"
                      f"{max(lat):.3f} ms")
    else:
        console.print(f"probes: {result.probes_sent} sent, {result.probes_failed} failed")
    for issue in result.issues:
        console.print(f"[bold]{issue.severity}[/bold] {issue.type} ({issue.origin}): "
                      f"{escape(issue.detail())}", markup=True, highlight=False)

