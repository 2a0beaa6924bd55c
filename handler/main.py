"""Entry point: `python -m handler COMMAND` — look the command up, run it, map any outcome."""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Optional

from handler import commands
from handler.environment import HandlerEnvironment, load_environment
from handler.errors import HANDLER, HandlerError, StateWriteError, StatusCode
from handler.events import EventWriter
from handler.logs import RedactingFormatter, configure
from handler.runtime import MemoryLog, Runtime
from handler.settings_file import choose_sequence
from handler.status import StatusReport, write_status
from plumbing.blobstore import DEFAULT_POLICY, BlobStore
from plumbing.clock import SystemClock
from plumbing.redact import Redactor

EXIT_USAGE = 2


@dataclass(frozen=True)
class Command:
    """One row of the command table: what runs, whether it reports status, how it fails."""

    name: str
    run: Callable[..., int]
    reports_status: bool
    fail_exit_code: int
    takes_argument: bool = False


COMMANDS: dict[str, Command] = {c.name: c for c in (
    Command("install", commands.install, False, 1),
    Command("enable", commands.enable, True, 1),
    Command("disable", commands.disable, False, 1),
    Command("uninstall", commands.uninstall, False, 1),
    Command("update", commands.update, False, 1),
    Command("worker", commands.worker, True, 1, takes_argument=True),
)}


def read_manifest(extension_dir: Path) -> Mapping[str, object]:
    try:
        manifest = json.loads((extension_dir / "HandlerManifest.json").read_text("utf-8"))
        handler: Mapping[str, object] = manifest[0].get("handlerManifest", {})
        return handler
    except (OSError, ValueError, LookupError, AttributeError):
        return {}


def build_runtime(env: HandlerEnvironment, command: str, argument: Optional[str],
                  environ: Mapping[str, str], redactor: Redactor) -> Runtime:
    from handler.operations.registry import build_registry

    job_log = env.log_folder / "jobs" / f"{argument}.log" if argument else None
    logger = configure(env.log_folder, redactor, job_log=job_log)
    memory = MemoryLog(RedactingFormatter(redactor))
    logger.addHandler(memory)
    version = environ.get("AZURE_GUEST_AGENT_EXTENSION_VERSION", "")
    runtime = Runtime(env, build_registry(environ), redactor,
                      BlobStore(policy=DEFAULT_POLICY, redactor=redactor),
                      logger, EventWriter(env.events_folder, version, redactor), memory,
                      environ=environ, clock=SystemClock())
    runtime.manifest = read_manifest(env.extension_dir)
    logger.info("%s%s: handler %s, sequence %s", command, f" {argument}" if argument else "",
                version or "(dev)", environ.get("ConfigSequenceNumber", "?"))
    return runtime


def main(argv: list[str], environ: Mapping[str, str] = os.environ) -> int:
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: python -m handler {{{'|'.join(COMMANDS)}}}", file=sys.stderr)
        return EXIT_USAGE
    command = COMMANDS[argv[0]]
    argument = argv[1] if command.takes_argument and len(argv) > 1 else None
    if command.takes_argument and argument is None:
        print(f"usage: python -m handler {command.name} ARGUMENT", file=sys.stderr)
        return EXIT_USAGE
    redactor = Redactor()
    env: Optional[HandlerEnvironment] = None
    try:
        env = load_environment(environ)
        runtime = build_runtime(env, command.name, argument, environ, redactor)
        result = command.run(runtime, argument) if argument else command.run(runtime)
        runtime.events.emit(command.name, f"{command.name} exited {result}")
        if runtime.status_write_error is not None:  # the blobs had their chance; now say it
            raise runtime.status_write_error
        return result if result == 0 else command.fail_exit_code
    except HandlerError as exc:
        return _fail(command, env, environ, redactor, exc)
    except OSError as exc:  # an unwritable folder, a full disk: still a clear, coded failure
        return _fail(command, env, environ, redactor, StateWriteError(
            f"{exc.strerror or exc}: {exc.filename or ''}".strip(": ")))
    except Exception as exc:  # noqa: BLE001 - the agent gets a message, never a traceback
        return _fail(command, env, environ, redactor,
                     HandlerError(f"unexpected {type(exc).__name__}: {exc}"))


def _code_for(env: HandlerEnvironment, seq: Optional[int], environ: Mapping[str, str],
              exc: HandlerError) -> StatusCode:
    """The number the settings' own operation reports this failure under (VMSnapshot's
    caller defines its numbers); the handler's own when the command is unknown."""
    from handler.operations.registry import build_registry
    from handler.settings import command_of
    from handler.settings_file import read_settings

    try:
        registry = build_registry(environ)
        raw = read_settings(env.config_folder, seq) if seq is not None else None
        op = registry.get(command_of(raw.public or {}, registry)) if raw is not None else None
    except (HandlerError, OSError):
        op = None
    return op.status_code(op.error_code(exc)) if op is not None else StatusCode(HANDLER,
                                                                                exc.code)


def _fail(command: Command, env: Optional[HandlerEnvironment], environ: Mapping[str, str],
          redactor: Redactor, exc: HandlerError) -> int:
    """Report an error that escaped the command: stderr always, status file when we can."""
    message = redactor(str(exc))
    print(f"{command.name} failed [{exc.code}]: {message}", file=sys.stderr)
    if command.reports_status and env is not None:
        seq = choose_sequence(env.config_folder, environ)
        code = _code_for(env, seq, environ, exc)
        report = StatusReport(env.name or "handler", command.name, "error", code, message)
        try:
            write_status(env.status_folder, seq if seq is not None else 0, report,
                         SystemClock().now())
        except HandlerError as status_exc:
            print(f"{command.name}: {redactor(str(status_exc))}", file=sys.stderr)
    return command.fail_exit_code
