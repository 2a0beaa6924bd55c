"""tcpdump's -z: a command run on each file a rotation closed, beside the capture, bounded."""
from __future__ import annotations

import os
import queue
import shutil
import threading
from typing import Callable, Optional, Tuple

from plumbing.proc import CommandError, run

COMMAND_TIMEOUT = 600.0  # one run of the command (gzip of a large file takes a while)
MAX_WAITING = 64         # files queued behind a slow command; more are reported, not run
FINISH_WAIT = 60.0       # at exit, how long the files still queued may take together
Identity = Tuple[int, int, int, int]  # a closed file: st_dev, st_ino, st_size, st_ctime_ns


class PostRotate:
    """Runs `command FILE` for each file handed to submit(), one at a time in a thread of
    its own at the lowest CPU priority (tcpdump runs it niced, in parallel): the capture
    never waits for it, and a command that fails, hangs or cannot start is reported through
    `report`, never fatal."""

    def __init__(self, command: str, report: Callable[[str], None],
                 timeout: float = COMMAND_TIMEOUT, max_waiting: int = MAX_WAITING) -> None:
        self.command, self.report, self.timeout = command, report, timeout
        self.failures = 0
        self._queue: queue.Queue[Optional[Tuple[str, Optional[Identity]]]] = \
            queue.Queue(max_waiting)
        self._thread = threading.Thread(target=self._work, name="postrotate", daemon=True)
        self._thread.start()

    def submit(self, path: str) -> None:
        """Called in the capture thread at each rotation: queue the file, never block."""
        try:
            self._queue.put_nowait((path, _identity(path)))
        except queue.Full:
            self.failures += 1
            self.report(f"-z {self.command}: not run on {path}: {self._queue.maxsize} files "
                        "are already waiting for it")

    def _argv(self, path: str) -> list[str]:
        """`--`: a command whose name begins with `-` is not an option of nice; `./`: nor
        is a relative file name beginning with `-` one of the command's."""
        nice = shutil.which("nice")
        name = "./" + path if path.startswith("-") else path
        return ([nice, "-n", "19", "--"] if nice else []) + [self.command, name]

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            path, closed = item
            if closed is not None and _identity(path) != closed:
                # -W wrapped (or -G without a time format): the name is the live file's now,
                # which the command (gzip) would compress and delete under the capture.
                self.failures += 1
                self.report(f"-z {self.command}: not run on {path}: replaced (the name reused "
                            "by a newer capture file) or removed before the command's turn")
                continue
            try:
                done = run(self._argv(path), timeout=self.timeout, check=False)
            except CommandError as exc:  # could not start it
                self.failures += 1
                self.report(f"-z {self.command} {path}: {exc}")
                continue
            if done.timed_out or done.returncode != 0:
                self.failures += 1
                what = f"timed out after {self.timeout:g} s" if done.timed_out else \
                    f"exited with {done.returncode}"
                tail = (done.stderr or done.stdout).strip()[-300:]
                self.report(f"-z {self.command} {path}: {what}" + (f": {tail}" if tail else ""))

    def close(self, wait: float = FINISH_WAIT) -> bool:
        """Let the queued files be done (at most `wait` seconds); whether they all were."""
        try:
            self._queue.put(None, timeout=wait)
        except queue.Full:
            self.report(f"-z {self.command}: still running after {wait:g} s at exit, "
                        f"{self._queue.qsize()} more files waiting: left to finish in the "
                        "background, the waiting ones never run")
            return False
        self._thread.join(wait)
        finished = not self._thread.is_alive()
        if not finished:
            self.report(f"-z {self.command}: still running after {wait:g} s at exit; left "
                        "to finish in the background")
        return finished


def _identity(path: str) -> Optional[Identity]:
    """The file as the rotation closed it (None when it cannot be read): its inode, and its
    size and change time, since a name reused at once often gets the freed inode back."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_dev, stat.st_ino, stat.st_size, stat.st_ctime_ns
