"""One snapshot run: pre-scripts, freeze, disk snapshots, thaw, post-scripts, consistency."""
from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Callable, Optional, Protocol, TypeVar

import azure.core.exceptions
import azure.storage.blob  # noqa: F401
import psutil

from plumbing.clock import Clock, SystemClock, utc_timestamp
from plumbing.crashpoints import crashpoint
from snapshot.config import SnapshotLocalConfig
from snapshot.disks import DiskSnapshot, SnapshotStore, failure_code, preflight, snapshot_disks
from snapshot.errors import Code, DiskSelectionError, FreezeError, SnapshotError
from snapshot.fields import FieldError
from snapshot.freeze import Freezer
from snapshot.log import BufferedLog
from snapshot.mounts import Mount, current_mounts, select_mounts
from snapshot.pghooks import PostgresHooks
from snapshot.pointmeta import record_outcome, snapshot_metadata, weakest
from snapshot.result import Consistency, SnapshotResult, StorageDetails, error_result
from snapshot.scripts import (
    PhaseResult,
    PluginConfig,
    ScriptHooks,
    check_scripts,
    load_plugin_config,
)
from snapshot.selection import DiskTarget, check_roles, plan_disks
from snapshot.settings import SnapshotSettings
from snapshot.workload import load_workload_config, unsupported

_SYSTEM_CLOCK = SystemClock()
T = TypeVar("T")


class Hooks(Protocol):
    """What quiesces around the freeze: plugin scripts (ScriptHooks) or a workload's hooks."""

    def pre(self) -> PhaseResult: ...

    def post(self) -> PhaseResult: ...


class Interrupted(SnapshotError):
    """The worker received a termination signal."""


@dataclass
class _Run:
    """Mutable bookkeeping of one run (private to run_snapshot)."""

    settings: SnapshotSettings
    plugin: Optional[PluginConfig] = None
    has_hooks: bool = False
    stop_on_failure: bool = False
    pre_started: bool = False  # post-scripts run whenever this is set, even if pre was cut short
    pre: Optional[PhaseResult] = None
    post: Optional[PhaseResult] = None
    froze: bool = False
    freeze_error: Optional[SnapshotError] = None
    freeze_window: Optional[float] = None
    targets: list[DiskTarget] = field(default_factory=list)
    own_metadata: list[dict[str, str]] = field(default_factory=list)  # each blob's, preflight
    disks: list[DiskSnapshot] = field(default_factory=list)
    recorded: set[Consistency] = field(default_factory=set)  # what the snapshots' metadata says
    snapped: list[str] = field(default_factory=list)  # disk URIs with a snapshot of this run
    storage: StorageDetails = field(default_factory=StorageDetails)
    timings: dict[str, float] = field(default_factory=dict)


def run_snapshot(settings: SnapshotSettings, *, blob_store: SnapshotStore,
                 config: SnapshotLocalConfig, log: BufferedLog,
                 clock: Clock = _SYSTEM_CLOCK) -> SnapshotResult:
    """Blocking; returns a result for every runtime failure instead of raising."""
    log.redactor.add(*settings.secrets())
    if settings.command == "install":
        log.info("install: nothing to prepare; the snapshot command does the work")
        return SnapshotResult("success", Code.SUCCESS, "installed", task_id=settings.task_id)
    run = _Run(settings)
    started = clock.monotonic()
    log.info(f"snapshot task {settings.task_id}: {len(settings.blob_sas_uris)} disk blob(s)")
    try:
        with _signals_as_exceptions():
            result = _execute(run, blob_store, config, log, clock)
    except SnapshotError as exc:
        log.error(f"snapshot failed ({exc.code}): {exc.message}")
        result = error_result(exc.code, log.redactor.redact(exc.message), settings.task_id,
                              settings.start_ticks)
    except Exception as exc:  # noqa: BLE001 - a worker must report, never crash
        log.error(f"unexpected {type(exc).__name__}: {exc}")
        result = error_result(Code.ERROR, log.redactor.redact(f"internal error: {exc}"),
                              settings.task_id, settings.start_ticks)
    if run.recorded:
        record_outcome(blob_store, settings.task_id, run.snapped, weakest(run.recorded),
                       result.consistency, log)
    run.timings["total"] = clock.monotonic() - started
    log.info(f"result {result.status} code {result.code} consistency "
             f"{result.consistency.value}: {result.message}")
    return _with_timings(result, run)


def _execute(run: _Run, store: SnapshotStore, config: SnapshotLocalConfig, log: BufferedLog,
             clock: Clock) -> SnapshotResult:
    hooks = _hooks(run, config, log, clock)
    freezing = config.fsfreeze and (run.plugin is None or run.plugin.fs_freeze_enabled)
    mounts: list[Mount] = []
    if freezing:
        mounts, notes = select_mounts(current_mounts(), config.mounts_to_skip,
                                      config.mounts_to_freeze)
        for note in notes if config.mounts_to_freeze is None else ():
            log.info(f"not freezing {note}")
    run.storage = _storage(mounts)
    _plan(run, log)
    run.own_metadata = _timed(run, "preflight", clock, lambda: preflight(store, run.targets,
                                                                         log))
    check_roles(run.targets, run.own_metadata)
    crashpoint("snapshot.run.after_preflight")
    if run.plugin is not None and hooks is not None:  # refuse bad scripts before any runs
        check_scripts(run.plugin, "pre")
        check_scripts(run.plugin, "post")
    try:
        if hooks is not None:
            run.pre_started = True  # a signal may cut the phase short: post-scripts run anyway
            run.pre = _timed(run, "pre_hooks", clock, hooks.pre)
            crashpoint("snapshot.run.after_pre_scripts")
            if not run.pre.ok and run.stop_on_failure:
                return _decide(run)
        _freeze_and_snapshot(run, store, config, [m.mountpoint for m in mounts], log, clock)
    finally:
        if run.pre_started and hooks is not None:
            crashpoint("snapshot.run.before_post_scripts")
            run.post = _timed(run, "post_hooks", clock, hooks.post)
            crashpoint("snapshot.run.after_post_scripts")
    return _decide(run)


def _plan(run: _Run, log: BufferedLog) -> None:
    """Which blobs to snapshot (includedDisks); the service-side flags that only get logged."""
    settings = run.settings
    try:
        run.targets = plan_disks(settings.blob_sas_uris, settings.included_disks)
    except FieldError as exc:
        raise DiskSelectionError(exc.message) from None
    skipped = len(settings.blob_sas_uris) - len(run.targets)
    log.info(f"snapshotting {len(run.targets)} disk blob(s)"
             + (f" (LUNs {', '.join(t.lun_label for t in run.targets)})"
                if settings.included_disks.selects else "")
             + (f"; {skipped} excluded by includedDisks" if skipped else ""))
    if settings.snapshot_ttl_enabled:  # as the original since 2023: the host path's business
        log.info("isSnapshotTtlEnabled: not passing a TTL header on the guest snapshot path")


def _hooks(run: _Run, config: SnapshotLocalConfig, log: BufferedLog,
           clock: Clock) -> Optional[Hooks]:
    """Workload hooks when workload.conf exists (they replace scripts), else plugin scripts."""
    workload = load_workload_config(config.workload_conf_path, log.redactor)
    if workload is not None:
        if workload.name != "postgres":
            raise unsupported(workload)
        run.has_hooks = run.stop_on_failure = True
        return PostgresHooks(workload, log, clock)
    run.plugin = load_plugin_config(config.plugin_config_path)
    if run.plugin is None or not (run.plugin.pre_scripts or run.plugin.post_scripts):
        return None
    run.has_hooks = True
    run.stop_on_failure = not run.plugin.continue_on_failure
    return ScriptHooks(run.plugin, log, clock)


def _freeze_and_snapshot(run: _Run, store: SnapshotStore, config: SnapshotLocalConfig,
                         mounts: Sequence[str], log: BufferedLog, clock: Clock) -> None:
    uris = [t.uri for t in run.targets]

    def metadata(claim: Consistency) -> tuple[Consistency, list[dict[str, str]]]:
        return claim, snapshot_metadata(run.settings.task_id, utc_timestamp(clock.now()),
                                        run.settings.backup_metadata, run.targets,
                                        run.own_metadata, claim)

    def snap(claimed: tuple[Consistency, list[dict[str, str]]]) -> None:
        """One snapshot of every disk, claiming what is true as it is taken."""
        crashpoint("snapshot.run.before_disk_snapshots")
        run.disks = _timed(run, "snapshot", clock, lambda: snapshot_disks(
            store, uris, claimed[1], config.snapshot_parallelism))
        for uri, disk in zip(uris, run.disks):
            if disk.is_successful:
                run.recorded.add(claimed[0])
                run.snapped += [uri] if uri not in run.snapped else []
        crashpoint("snapshot.run.after_disk_snapshots")

    if not mounts:
        log.info("no filesystem to freeze: taking a crash-consistent snapshot")
        return snap(metadata(Consistency.CRASH))
    quiesced = metadata(Consistency.APPLICATION if run.has_hooks and run.pre and run.pre.ok
                        else Consistency.FILE_SYSTEM)  # built before the freeze: a short window
    freezer = Freezer(mounts, config.freeze_timeout, log, config.watchdog_report_path)
    bytecode, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        with freezer:
            snap(quiesced)
        run.froze = not freezer.timed_out
        if freezer.timed_out:
            run.freeze_error = FreezeError(
                f"freeze timeout: the filesystems were thawed after {config.freeze_timeout:g}s, "
                "before the disk snapshots finished", Code.FREEZE_TIMEOUT)
    except FreezeError as exc:
        run.freeze_error = exc
        log.error(f"freeze failed ({exc.code}): {exc.message}")
        if _crash_allowed(run):
            log.info("single-disk managed VM allows crash consistency and retries are left "
                     f"({run.settings.custom.backup_retry_count}): snapshot anyway")
            snap(metadata(Consistency.CRASH))
    finally:
        sys.dont_write_bytecode = bytecode
        run.freeze_window = freezer.window if freezer.first_freeze else None


def _decide(run: _Run) -> SnapshotResult:
    """The spec's consistency table."""
    scripts_failed = [p for p in (run.pre, run.post) if p is not None and not p.ok]
    if scripts_failed and run.stop_on_failure:
        first = scripts_failed[0]
        return _result(run, "error", first.code, first.message, Consistency.NONE)
    failed = [d for d in run.disks if not d.is_successful]
    if run.freeze_error is not None and (not run.disks or not _crash_allowed(run)):
        extra = f"; {len(failed)} disk snapshot(s) failed too" if failed else ""
        return _result(run, "error", run.freeze_error.code, run.freeze_error.message + extra,
                       Consistency.NONE)
    if not run.disks or failed:
        message = "; ".join(d.error_message for d in failed) or "no disk was snapshotted"
        return _result(run, "error", failure_code(run.disks) or Code.ERROR,
                       f"{len(failed)} of {len(run.targets)} disk snapshot(s) failed: "
                       + message, Consistency.NONE)
    if not run.froze:
        return _result(run, "success", Code.SUCCESS, "crash-consistent snapshot taken",
                       Consistency.CRASH)
    if run.has_hooks and not scripts_failed:
        return _result(run, "success", Code.SUCCESS_APP_CONSISTENT,
                       "application-consistent snapshot taken", Consistency.APPLICATION)
    note = f" ({scripts_failed[0].message}; continueBackupOnFailure)" if scripts_failed else ""
    return _result(run, "success", Code.SUCCESS,
                   "file-system-consistent snapshot taken" + note, Consistency.FILE_SYSTEM)


def _result(run: _Run, status: str, code: int, message: str,
            consistency: Consistency) -> SnapshotResult:
    return SnapshotResult(status, code, message, consistency, run.settings.task_id,
                          run.settings.start_ticks, tuple(run.disks), run.storage,
                          freeze_window=run.freeze_window)


def _with_timings(result: SnapshotResult, run: _Run) -> SnapshotResult:
    timings = dict(run.timings)
    if run.freeze_window is not None:
        timings["freeze_window"] = run.freeze_window
    telemetry = tuple((f"{k}Ms", f"{v * 1000:.0f}") for k, v in sorted(timings.items()))
    if run.pre is not None:
        telemetry += (("preScriptRuns", str(run.pre.runs)),)
    if run.post is not None:
        telemetry += (("postScriptRuns", str(run.post.runs)),)
    return SnapshotResult(result.status, result.code, result.message, result.consistency,
                          result.task_id, result.start_ticks, result.disks, result.storage,
                          result.telemetry + telemetry, result.freeze_window, timings)


def _crash_allowed(run: _Run) -> bool:
    """The spec's (and the original's) rule: one disk, managed, allowed, and retries left."""
    custom = run.settings.custom
    return (len(run.targets) == 1 and custom.is_managed_vm and custom.can_take_crash_consistent
            and custom.retries_left)


def _storage(mounts: Sequence[Mount]) -> StorageDetails:
    try:
        used = sum(psutil.disk_usage(m.mountpoint).used for m in mounts)
        return StorageDetails(len(mounts), used, False)
    except OSError:
        return StorageDetails(len(mounts), 0, True)


def _timed(run: _Run, name: str, clock: Clock, step: Callable[[], T]) -> T:
    started = clock.monotonic()
    try:
        return step()
    finally:
        run.timings[name] = clock.monotonic() - started


def _raise_interrupted(signum: int, _frame: object) -> None:
    raise Interrupted(f"interrupted by signal {signum}")


@contextlib.contextmanager
def _signals_as_exceptions() -> Iterator[None]:
    """SIGTERM/SIGHUP become exceptions so `finally` thaws and post-scripts run."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, _raise_interrupted) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
