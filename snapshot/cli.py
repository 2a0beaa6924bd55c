"""Local CLI: `run` (a whole snapshot run from settings files), `list` and `restore`."""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Optional

from plumbing.blobstore import BlobError, BlobStore
from plumbing.clock import Clock, SystemClock
from plumbing.retry import RetryPolicy
from snapshot.config import load_local_config
from snapshot.errors import Code, SnapshotError
from snapshot.log import BufferedLog
from snapshot.restore import list_recovery_points, restore_disks
from snapshot.result import SnapshotResult, error_result
from snapshot.runner import run_snapshot
from snapshot.settings import SnapshotSettings, parse_snapshot_settings
from snapshot.tasks import TaskRegistry


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m snapshot", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("run", "run-for-test"):
        run = sub.add_parser(name, help="run one snapshot from public/protected settings JSON")
        run.add_argument("--public", required=True, help="public settings JSON file")
        run.add_argument("--protected", required=True, help="protected settings JSON file")
        run.add_argument("--state-dir", help="task-id dedupe directory (skip dedupe if unset)")
        run.add_argument("--attempts", type=int, default=2, help="tries per blob request")
    listing = sub.add_parser("list", help="list recovery points in a disk container")
    listing.add_argument("--container", required=True, help="container SAS URI (list perm)")
    listing.add_argument("--prefix", default="")
    restore = sub.add_parser("restore", help="RestoreDisks: copy one recovery point's disks")
    restore.add_argument("--container", required=True, help="source container SAS URI")
    restore.add_argument("--task", required=True, help="task id of the recovery point")
    restore.add_argument("--target", required=True, help="target container SAS URI")
    for each in (listing, restore):
        each.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command in ("run", "run-for-test"):
            return _run(args)
        if args.command == "list":
            return _list(args)
        return _restore(args)
    except SnapshotError as exc:
        print(f"error {exc.code}: {exc.message}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    """Streams log lines to stderr (a pipe, never a frozen file); status JSON on stdout."""
    log = BufferedLog(listener=lambda line: print(line, file=sys.stderr, flush=True))
    clock = SystemClock()
    try:
        with open(args.public, encoding="utf-8") as pub, \
                open(args.protected, encoding="utf-8") as pro:
            public, protected = json.load(pub), json.load(pro)
        log.redactor.add_values(protected)
    except (OSError, ValueError, RecursionError) as exc:
        raise SnapshotError(f"cannot read the settings files: {type(exc).__name__}",
                            Code.PARAMETER_ERROR) from None
    try:
        settings = parse_snapshot_settings(public, protected, now=clock.now())
        config = load_local_config(os.environ)
    except SnapshotError as exc:
        task = public.get("taskId") if isinstance(public, dict) else ""
        result = error_result(exc.code, log.redactor.redact(exc.message),
                              task if isinstance(task, str) else "")
        log.error(result.message)
        return _report(result, None, log, clock)
    if args.state_dir and not TaskRegistry(args.state_dir).claim(settings.task_id):
        result = error_result(Code.ALREADY_PROCESSED, f"task {settings.task_id} was already "
                              "processed", settings.task_id, settings.start_ticks)
        return _report(result, None, log, clock)
    store = BlobStore(policy=RetryPolicy(attempts=max(1, args.attempts), base_delay=0.2,
                                         retry_on=_retryable),
                      timeout=config.snapshot_timeout, redactor=log.redactor)
    result = run_snapshot(settings, blob_store=store, config=config, log=log, clock=clock)
    return _report(result, settings, log, clock, store)


def _retryable(exc: BaseException) -> bool:
    from plumbing.blobstore import RETRYABLE

    return isinstance(exc, BlobError) and exc.kind in RETRYABLE


def _report(result: SnapshotResult, settings: Optional[SnapshotSettings], log: BufferedLog,
            clock: Clock, store: Optional[BlobStore] = None) -> int:
    document = result.status_blob_document(clock.now())
    if settings is not None and store is not None:
        for uri, data, kind in ((settings.status_blob_uri, json.dumps(document), "status"),
                                (settings.logs_blob_uri, log.text(), "log")):
            if uri:
                try:
                    store.put_bytes(uri, data.encode(), "application/json" if kind == "status"
                                    else "text/plain")
                except BlobError as exc:
                    print(f"could not write the {kind} blob: {exc}", file=sys.stderr)
    print(json.dumps(document, indent=2))
    return 0 if result.ok else 1


def _list(args: argparse.Namespace) -> int:
    points = list_recovery_points(args.container, args.prefix)
    if args.json:
        print(json.dumps([p.as_dict() for p in points], indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Recovery points")
    for column in ("task", "time", "type", "disks"):
        table.add_column(column)
    for point in points:
        table.add_row(point.task_id, point.time, point.consistency.recovery_point_type,
                      ", ".join(d.disk for d in point.disks))
    Console().print(table)
    return 0


def _restore(args: argparse.Namespace) -> int:
    if args.json or not sys.stdout.isatty():
        outcome = restore_disks(args.container, args.task, args.target)
        print(json.dumps(outcome, indent=2))
        return 0
    from rich.progress import Progress

    with Progress() as bar:
        tasks = {}

        def progress(disk: str, done: int, total: int) -> None:
            if disk not in tasks:
                tasks[disk] = bar.add_task(f"verify {disk}", total=total)
            bar.update(tasks[disk], completed=done)

        outcome = restore_disks(args.container, args.task, args.target, progress)
    print(f"restored {len(outcome['disks'])} disk(s); vmconfig at {outcome['vmconfig']}")
    return 0
