"""Sends a worker's status to its blob from a thread, so storage that hangs never holds up the
work itself (a capture's time limit, its stop); only the newest status is ever sent."""
from __future__ import annotations

import logging
import threading
from typing import Callable


class BackgroundPublisher:
    """`poke()` after each status change; the thread publishes the latest state when free."""

    def __init__(self, publish: Callable[[], object], log: logging.Logger) -> None:
        self._publish = publish
        self._log = log
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="status-publisher", daemon=True)
        self._thread.start()

    def poke(self) -> None:
        self._wake.set()

    def close(self) -> None:
        """Stop after the current upload, if any; never waits for one that hangs."""
        self._closed.set()
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            if self._closed.is_set():
                return
            self._wake.clear()
            try:
                self._publish()
            except Exception:  # noqa: BLE001 - a failed publication must not end the worker
                self._log.exception("background status publication failed")
