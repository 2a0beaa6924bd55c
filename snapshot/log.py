"""An in-memory, already-redacted run log: nothing is written to disk while filesystems freeze."""
from __future__ import annotations

import threading
import time
from typing import Callable, Optional

from plumbing.redact import Redactor

MAX_LINE = 8 * 1024
MAX_BYTES = 10 * 1024 * 1024  # the logs blob keeps the last 10 MiB, as the original


class BufferedLog:
    """Collects log lines in memory; every stored line has passed through the redactor."""

    def __init__(self, redactor: Optional[Redactor] = None,
                 listener: Optional[Callable[[str], None]] = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.redactor = redactor or Redactor()
        self._listener = listener
        self._clock = clock
        self._lines: list[str] = []
        self._size = 0
        self._lock = threading.Lock()

    def info(self, message: str) -> None:
        self._add("INFO", message)

    def warning(self, message: str) -> None:
        self._add("WARNING", message)

    def error(self, message: str) -> None:
        self._add("ERROR", message)

    def block(self, title: str, text: str) -> None:
        """Multi-line output (a script's stdout) as indented lines under a title."""
        self.info(title)
        for line in text.splitlines():
            self.info("    " + line)

    def lines(self) -> list[str]:
        with self._lock:
            return list(self._lines)

    def text(self) -> str:
        return "\n".join(self.lines()) + ("\n" if self._lines else "")

    def _add(self, level: str, message: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(self._clock()))
        line = f"{stamp}Z {level} {self.redactor.redact(str(message))[:MAX_LINE]}"
        with self._lock:
            self._lines.append(line)
            self._size += len(line) + 1
            while self._size > MAX_BYTES and len(self._lines) > 1:
                self._size -= len(self._lines.pop(0)) + 1
        if self._listener is not None:
            self._listener(line)
