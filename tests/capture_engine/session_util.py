"""Run a capture session in a thread inside the lab's capture namespace."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import List, Optional

from capture_engine.session import run_capture


@dataclass
class Running:
    stop: threading.Event
    thread: threading.Thread
    progress: List[dict] = field(default_factory=list)
    result: Optional[object] = None
    running_at: Optional[float] = None  # wall time of the first Running report

    def finish(self, timeout: float = 30):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the capture session did not end"
        return self.result


def start_session(lab, request, backend: str, **kwargs) -> Running:
    ready = threading.Event()
    running = Running(threading.Event(), None)

    def progress(status: dict) -> None:
        running.progress.append(status)
        if status["packetCaptureStatus"] == "Running" and running.running_at is None:
            running.running_at = time.time()
        if status["packetCaptureStatus"] != "NotStarted":
            ready.set()

    def work() -> None:
        running.result = run_capture(request, stop_event=running.stop, on_progress=progress,
                                     backend=backend, netns=lab.vm.name, **kwargs)
        ready.set()
    running.thread = threading.Thread(target=work, daemon=True)
    running.thread.start()
    assert ready.wait(15), "the capture session did not start"
    return running
