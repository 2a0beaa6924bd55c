"""Logging to the agent's logFolder: rotated files, every line redacted before it is written."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional

from plumbing.files import locked
from plumbing.redact import Redactor

LOGGER_NAME = "handler"
LOG_FILE = "extension.log"
MAX_BYTES = 2 * 1024 * 1024
BACKUPS = 5
FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"


class RedactingFormatter(logging.Formatter):
    """Formats a record (message, arguments, traceback) and then redacts the whole line."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__(FORMAT)
        self._redact = redactor

    def format(self, record: logging.LogRecord) -> str:
        return self._redact(super().format(record))


class SharedRotatingFileHandler(logging.Handler):
    """A size-rotated log that several processes write at once (enable, disable, workers).

    Each line is appended under an flock on `<file>.lock`, which also covers the rotation:
    no process keeps writing into a file another one has just renamed away, so no line is
    lost or duplicated (logging's RotatingFileHandler is for one process only)."""

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        super().__init__()
        self.path, self.max_bytes, self.backups = path, max_bytes, backups
        self._lock_path = path.with_name(path.name + ".lock")

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = (self.format(record) + "\n").encode("utf-8", "replace")
            with locked(self._lock_path):
                self._append(data)
        except Exception:  # noqa: BLE001 - logging must never take the handler down
            self.handleError(record)

    def _append(self, data: bytes) -> None:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            size = 0
        if size and size + len(data) > self.max_bytes:
            self._rotate()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)

    def _rotate(self) -> None:
        for index in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{index}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{index + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))


def configure(log_folder: Optional[Path], redactor: Redactor, job_log: Optional[Path] = None,
              level: int = logging.INFO) -> logging.Logger:
    """The handler's logger: rotated extension.log, plus one file per worker job."""
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(level)
    logger.propagate = False
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    formatter = RedactingFormatter(redactor)
    targets: list[logging.Handler] = []
    if log_folder is not None:
        try:
            log_folder.mkdir(parents=True, exist_ok=True)
            targets.append(SharedRotatingFileHandler(log_folder / LOG_FILE, MAX_BYTES, BACKUPS))
            if job_log is not None:
                job_log.parent.mkdir(parents=True, exist_ok=True)
                targets.append(logging.FileHandler(job_log, encoding="utf-8"))
        except OSError:
            targets = []  # logging must never take the handler down; status still reports
    if not targets:
        targets.append(logging.NullHandler())
    for target in targets:
        target.setFormatter(formatter)
        logger.addHandler(target)
    return logger


def get_logger(name: str = "") -> logging.Logger:
    return logging.getLogger(f"{LOGGER_NAME}.{name}" if name else LOGGER_NAME)
