"""The operation table: commandToExecute -> the operation that runs it."""
from __future__ import annotations

from typing import Dict

from handler.operations.base import Operation


def build_registry() -> Dict[str, Operation]:
    operations: Dict[str, Operation] = {}
    return operations
