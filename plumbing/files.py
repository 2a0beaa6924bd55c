"""Files shared with a crash and with another process: atomic replacement and advisory locks."""
from __future__ import annotations

import fcntl
import os
import tempfile
import time
from contextlib import contextmanager
from typing import Iterator, Optional, Union

PathLike = Union[str, "os.PathLike[str]"]
POLL_SECONDS = 0.02


class LockTimeout(Exception):
    """The lock was still held by someone else when the wait ran out."""


def write_atomic(path: PathLike, data: bytes, mode: int = 0o600) -> None:
    """Replace `path` with `data`: a temp file in the same folder, fsync, rename, fsync of the
    folder. A reader sees the old file or the new one, never half of one, and after a crash
    the rename is either done or not."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_folder(folder)


def fsync_folder(folder: PathLike) -> None:
    """Make a rename or a creation in `folder` durable (best effort: some filesystems refuse)."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def locked(path: PathLike, wait: Optional[float] = None, mode: int = 0o600) -> Iterator[int]:
    """An exclusive flock on `path` (a folder is locked as itself: no file to create, so a full
    disk still locks), released when the block ends or the process dies. `wait`: at most that
    many seconds, then LockTimeout; None waits as long as it takes. Yields the locked fd."""
    if os.path.isdir(path):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    else:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, mode)
    try:
        _acquire(fd, path, wait)
        yield fd
    finally:
        os.close(fd)  # releases the flock


def _acquire(fd: int, path: PathLike, wait: Optional[float]) -> None:
    if wait is None:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise LockTimeout(f"{os.fspath(path)} is locked by another process") from None
            time.sleep(POLL_SECONDS)
