"""PostgreSQL workload hooks: pg_backup_start held in one psql session across the freeze."""
from __future__ import annotations

import io
import os
import select
import shutil
import subprocess
import threading
import time
from typing import Optional

from plumbing.clock import Clock, SystemClock
from plumbing.proc import kill_group, own_process_group
from snapshot.errors import Code
from snapshot.log import BufferedLog
from snapshot.scripts import PhaseResult
from snapshot.securepath import UntrustedPath, trusted_root_file
from snapshot.workload import WorkloadConfig, credential_env

LABEL = "vmsnapshot"
STDERR_CAP = 16 * 1024
# What libpq says when the credentials, not the connection, are at fault.
_AUTH_WORDS = ("authentication failed", "no password supplied", "password is required")
_SYSTEM_CLOCK = SystemClock()
WAIT_SLICE = 0.5  # the longest one wait for psql lasts before the clock is read again


class PostgresHooks:
    """pre() quiesces (checkpoint + backup mode), post() resumes; post() always ends the session.

    If this process dies, psql reads EOF and exits, and the server aborts the backup itself.
    """

    def __init__(self, config: WorkloadConfig, log: BufferedLog,
                 clock: Clock = _SYSTEM_CLOCK) -> None:
        self.config = config
        self.log = log
        self.clock = clock  # the statement timeout is read from it (tests drive it)
        self._psql: Optional[subprocess.Popen[bytes]] = None
        self._buffer = b""
        self._stderr: list[bytes] = []
        self._legacy = False
        self._drain: Optional[threading.Thread] = None

    def pre(self) -> PhaseResult:
        """Connect (505 credentials refused, 506 no connection, 500 psql cannot start), then
        start the backup (510 no answer within `timeout`, 509 the server refused)."""
        try:
            self._start()
        except UntrustedPath as exc:
            return self._failed("pre", Code.WORKLOAD_PRE_ERROR,
                                f"psql could not start: {exc.message}")
        except (OSError, KeyError, ValueError) as exc:  # KeyError: linux_user unknown
            code = Code.WORKLOAD_AUTH_MISSING if isinstance(exc, KeyError) \
                else Code.WORKLOAD_PRE_ERROR
            return self._failed("pre", code, f"psql could not start: {type(exc).__name__}")
        try:
            version = self._ask("SHOW server_version_num;")
            self._legacy = int(version[0]) < 150000
        except (OSError, RuntimeError, ValueError, IndexError) as exc:
            return self._failed("pre", self._connect_code(), f"cannot connect: {exc}")
        start = "pg_start_backup" if self._legacy else "pg_backup_start"
        try:
            lsn = self._ask(f"SELECT {start}('{LABEL}', true"
                            + (", false);" if self._legacy else ");"))
        except (OSError, RuntimeError, ValueError, IndexError) as exc:
            code = Code.WORKLOAD_QUIESCE_TIMEOUT if isinstance(exc, TimeoutError) \
                else Code.WORKLOAD_QUIESCE_ERROR
            return self._failed("pre", code, f"quiesce failed: {exc}")
        self.log.info(f"postgres quiesced: backup started at WAL {lsn[0] if lsn else '?'}")
        return PhaseResult("pre", True, 0, "postgres quiesced", 1)

    def post(self) -> PhaseResult:
        if self._psql is None:
            return PhaseResult("post", True, 0, "postgres was not quiesced", 0)
        stop = ("SELECT labelfile FROM pg_stop_backup(false);" if self._legacy
                else "SELECT labelfile FROM pg_backup_stop(false);")
        try:
            label = self._ask(stop)
        except (OSError, RuntimeError) as exc:  # a timeout too: no row for a post timeout
            return self._failed("post", Code.WORKLOAD_POST_ERROR, f"resume failed: {exc}")
        finally:
            self._close()
        self.log.block("postgres resumed; backup label:", "\n".join(label))
        return PhaseResult("post", True, 0, "postgres resumed", 1)

    def _connect_code(self) -> int:
        if self._psql is not None and self._psql.poll() is not None and self._drain:
            self._drain.join(2)  # psql exited: let its last words arrive
        said = b"".join(self._stderr).decode("utf-8", "replace").lower()
        if any(words in said for words in _AUTH_WORDS) or (
                "role " in said and "does not exist" in said):
            return Code.WORKLOAD_AUTH_MISSING
        return Code.WORKLOAD_CONNECTION_ERROR

    def _failed(self, phase: str, code: int, message: str) -> PhaseResult:
        self._close()
        detail = b"".join(self._stderr).decode("utf-8", "replace").strip()[-500:]
        text = message + (f" ({detail})" if detail else "")
        self.log.error(f"postgres {text}")
        return PhaseResult(phase, False, code, f"postgres {text}", 1)

    def _start(self) -> None:
        psql = self.config.command_path or shutil.which("psql") or "psql"
        if os.path.isdir(psql):
            psql = os.path.join(psql, "psql")
        if os.path.isabs(psql):  # we run it, as root unless linux_user says otherwise
            psql = trusted_root_file(psql).path
        env = dict(os.environ, PGAPPNAME=LABEL, PGCONNECT_TIMEOUT="10")
        env.update(credential_env(self.config))
        self._psql = subprocess.Popen(
            [psql, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd="/",
            user=self.config.linux_user or None,
            **own_process_group())  # in the worker's session: uninstall's kill reaches it
        self._drain = threading.Thread(target=self._drain_stderr, daemon=True)
        self._drain.start()

    def _drain_stderr(self) -> None:
        assert self._psql is not None and self._psql.stderr is not None
        stream = self._psql.stderr  # _close() may drop self._psql while this thread reads
        assert isinstance(stream, io.BufferedReader)  # a PIPE with default buffering: read1
        kept = 0
        for chunk in iter(lambda: stream.read1(4096), b""):
            if kept < STDERR_CAP:
                self._stderr.append(chunk[:STDERR_CAP - kept])
                kept += len(chunk)

    def _ask(self, sql: str) -> list[str]:
        """Send one statement; return its output lines, up to a marker, within the timeout."""
        assert self._psql is not None and self._psql.stdin is not None
        assert self._psql.stdout is not None
        marker = f"--{LABEL}-done-{time.monotonic_ns()}--"
        self._psql.stdin.write(f"{sql}\n\\echo {marker}\n".encode())
        self._psql.stdin.flush()
        deadline = self.clock.monotonic() + self.config.timeout
        while marker.encode() not in self._buffer:
            left = deadline - self.clock.monotonic()
            if left <= 0:
                raise TimeoutError(f"no answer within {self.config.timeout:g}s")
            ready, _, _ = select.select([self._psql.stdout], [], [], min(left, WAIT_SLICE))
            if ready:
                data = os.read(self._psql.stdout.fileno(), 65536)
                if not data:
                    raise RuntimeError(self._ended(deadline))
                self._buffer += data
        answer, _, self._buffer = self._buffer.partition(marker.encode() + b"\n")
        return [line for line in answer.decode("utf-8", "replace").splitlines() if line]

    def _ended(self, deadline: float) -> str:
        """Why psql's output ended: its exit status, waited for within what is left of the
        statement's timeout (a psql, or a wrapper, that closed its output may linger)."""
        assert self._psql is not None
        while True:
            left = deadline - self.clock.monotonic()
            try:  # sliced, as the answer's wait: the timeout is read from the clock
                return f"psql exited with {self._psql.wait(max(0.0, min(left, WAIT_SLICE)))}"
            except subprocess.TimeoutExpired:
                if left <= WAIT_SLICE:
                    return "psql closed its output and did not exit"

    def _close(self) -> None:
        psql, self._psql = self._psql, None
        if psql is None:
            return
        assert psql.stdin is not None
        try:
            psql.stdin.close()
            psql.wait(5)
        except (OSError, subprocess.TimeoutExpired):
            kill_group(psql.pid)
            psql.wait()
        if self._drain is not None:
            self._drain.join(2)  # its stderr, complete, for the message
