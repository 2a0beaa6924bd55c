"""The operation table: commandToExecute -> the operation that runs it."""
from __future__ import annotations

import os
from typing import Any, Mapping

from handler.operations.base import Operation
from handler.operations.connectivity_check import ConnectivityCheck
from handler.operations.packet_capture import PacketCapture
from handler.operations.vmsnapshot import VmSnapshot


def build_registry(environ: Mapping[str, str] = os.environ) -> dict[str, Operation[Any]]:
    operations: list[Operation[Any]] = [ConnectivityCheck(), PacketCapture(environ),
                                        VmSnapshot("snapshot"), VmSnapshot("install")]
    return {op.command: op for op in operations}
