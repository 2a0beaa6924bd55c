"""Logging to the agent's logFolder: rotated files, every line redacted before it is written."""
from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path
from typing import Optional

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
    targets = []
    if log_folder is not None:
        try:
            log_folder.mkdir(parents=True, exist_ok=True)
            targets.append(logging.handlers.RotatingFileHandler(
                log_folder / LOG_FILE, maxBytes=MAX_BYTES, backupCount=BACKUPS,
                encoding="utf-8"))
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
