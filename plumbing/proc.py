"""The one subprocess wrapper: argument lists, mandatory timeout, group kill, capped output.

A command runs in a process group of its own (so a timeout, or any exception that leaves `run`,
kills it with everything it started) inside the caller's session: whoever ends the caller's
session (`kill_session`, as uninstall does to a worker that leads its own) ends the command too.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import IO, Any, Mapping, Optional, Sequence

DEFAULT_OUTPUT_CAP = 64 * 1024


@dataclass(frozen=True)
class Completed:
    """What a finished (or killed) command left behind."""

    argv: Sequence[str]
    returncode: int
    stdout: str
    stderr: str
    timed_out: bool
    duration: float
    truncated: bool = False


class CommandError(Exception):
    """A command failed, timed out, or could not be started."""

    def __init__(self, result: Optional[Completed], message: str) -> None:
        super().__init__(message)
        self.result = result


def run(
    argv: Sequence[str],
    *,
    timeout: float,
    check: bool = True,
    cap: int = DEFAULT_OUTPUT_CAP,
    env: Optional[Mapping[str, str]] = None,
    cwd: Optional[str] = None,
    input_bytes: Optional[bytes] = None,
) -> Completed:
    """Run argv in its own process group; kill the whole group when `timeout` expires, and
    when anything else ends the wait (a signal turned into an exception): never left running."""
    if isinstance(argv, str):
        raise TypeError("argv must be a list of arguments, never a shell string")
    started = time.monotonic()
    try:
        child = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE if input_bytes is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            **own_process_group(),
        )
    except OSError as exc:
        raise CommandError(None, f"cannot start {argv[0]}: {exc.strerror or exc}") from exc
    out, err = _CappedReader(child.stdout, cap), _CappedReader(child.stderr, cap)
    if input_bytes is not None and child.stdin is not None:
        _feed(child.stdin, input_bytes)
    timed_out = False
    try:
        child.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        kill_group(child.pid)
        child.wait()
    except BaseException:
        kill_group(child.pid)
        child.wait()
        raise
    # Children that escaped into the background may hold the pipes open: do not wait forever.
    out.join(1.0)
    err.join(1.0)
    result = Completed(
        argv=tuple(argv),
        returncode=child.returncode,
        stdout=out.text(),
        stderr=err.text(),
        timed_out=timed_out,
        duration=time.monotonic() - started,
        truncated=out.truncated or err.truncated,
    )
    if check and (timed_out or result.returncode != 0):
        raise CommandError(result, describe_failure(result))
    return result


def describe_failure(result: Completed) -> str:
    what = f"timed out after {result.duration:.1f}s" if result.timed_out else (
        f"exited with {result.returncode}"
    )
    tail = (result.stderr or result.stdout).strip()[-500:]
    return f"{result.argv[0]} {what}" + (f": {tail}" if tail else "")


def own_process_group() -> dict[str, Any]:
    """Popen arguments for a child leading a new process group in our session."""
    if sys.version_info >= (3, 11):
        return {"process_group": 0}  # novermin
    # Before 3.11 only a preexec_fn can do it; setpgid(0, 0) takes no lock in the child.
    return {"preexec_fn": os.setpgrp}


def kill_session(sid: int, sig: int = signal.SIGKILL) -> list[int]:
    """Signal every live process of session `sid` (never our own session, nor init's); looks
    again while it finds any, since one may fork meanwhile. Returns the pids signalled."""
    if sid <= 1 or sid == os.getsid(0):
        return []
    hit: list[int] = []
    for _ in range(5):
        found = [pid for pid in _session_members(sid) if pid != os.getpid()]
        if not found:
            break
        for pid in found:
            try:
                os.kill(pid, sig)
                hit.append(pid)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.05)  # let the signalled processes die before looking again
    return hit


def _session_members(sid: int) -> list[int]:
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as stream:
                fields = stream.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if len(fields) > 3 and fields[0] not in ("Z", "X") and fields[3] == str(sid):
            members.append(int(entry))
    return members


def kill_group(pid: int, sig: int = signal.SIGKILL) -> None:
    """Signal the process group led by pid; a group already gone is not an error."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _feed(stdin: IO[bytes], data: bytes) -> None:
    def writer() -> None:
        try:
            stdin.write(data)
            stdin.close()
        except (BrokenPipeError, OSError):
            pass

    threading.Thread(target=writer, daemon=True).start()


class _CappedReader:
    """Drains a pipe in a thread, keeping only the first `cap` bytes."""

    def __init__(self, pipe: Optional[IO[bytes]], cap: int) -> None:
        self._chunks: list[bytes] = []
        self._kept = 0
        self._cap = cap
        self.truncated = False
        self._thread = threading.Thread(target=self._drain, args=(pipe,), daemon=True)
        self._thread.start()

    def _drain(self, pipe: Optional[IO[bytes]]) -> None:
        if pipe is None:
            return
        with pipe:
            # One read(2) a chunk, as BufferedReader.read1 would do on this unread pipe.
            for chunk in iter(lambda: os.read(pipe.fileno(), 65536), b""):
                room = self._cap - self._kept
                if room > 0:
                    self._chunks.append(chunk[:room])
                    self._kept += min(room, len(chunk))
                if len(chunk) > room:
                    self.truncated = True

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def text(self) -> str:
        return b"".join(self._chunks).decode("utf-8", "replace")
