"""Task-id dedupe: a task already claimed is never snapshotted again (file lock, atomic write)."""
from __future__ import annotations

import json
import os

from plumbing.files import locked, write_atomic

KEEP_TASKS = 60


class TaskRegistry:
    """Records processed task ids under `state_dir`, guarded by an exclusive file lock."""

    def __init__(self, state_dir: str, keep: int = KEEP_TASKS) -> None:
        self.state_dir = state_dir
        self.keep = keep
        self._path = os.path.join(state_dir, "snapshot-tasks.json")
        self._lock_path = os.path.join(state_dir, "snapshot-tasks.lock")

    def claim(self, task_id: str) -> bool:
        """True if this call claimed task_id; False if it was already processed (code 3)."""
        os.makedirs(self.state_dir, exist_ok=True)
        with locked(self._lock_path):
            seen = self._read()
            if task_id in seen:
                return False
            write_atomic(self._path, json.dumps((seen + [task_id])[-self.keep:]).encode())
            return True

    def processed(self) -> list[str]:
        return self._read()

    def _read(self) -> list[str]:
        try:
            with open(self._path, encoding="utf-8") as stream:
                value = json.load(stream)
        except FileNotFoundError:
            return []
        except (ValueError, OSError):
            return []  # a corrupt record is rebuilt rather than blocking every backup
        return [str(v) for v in value] if isinstance(value, list) else []
