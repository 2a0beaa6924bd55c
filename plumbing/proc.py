"""The one subprocess wrapper: argument lists, mandatory timeout, group kill, capped output."""
from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import IO, List, Mapping, Optional, Sequence

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
    """Run argv in its own process group; kill the whole group when `timeout` expires."""
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
            start_new_session=True,
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
        self._chunks: List[bytes] = []
        self._kept = 0
        self._cap = cap
        self.truncated = False
        self._thread = threading.Thread(target=self._drain, args=(pipe,), daemon=True)
        self._thread.start()

    def _drain(self, pipe: Optional[IO[bytes]]) -> None:
        if pipe is None:
            return
        with pipe:
            for chunk in iter(lambda: pipe.read1(65536), b""):
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
