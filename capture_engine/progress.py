"""The CLI's live progress display (rich): packets, bytes, drops, elapsed against the limit."""
from __future__ import annotations

from typing import Optional

from rich.console import Console
from rich.live import Live
from rich.table import Table


def _number(value: object) -> float:
    """A querystatus count or duration; 0 when absent."""
    return float(value) if isinstance(value, (int, float)) else 0.0


def _size(count: object) -> str:
    value = _number(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(count)


class ProgressView:
    """A one-table live view on stderr; does nothing when not enabled (not a terminal)."""

    def __init__(self, time_limit: float, enabled: bool) -> None:
        self.time_limit = time_limit
        self.enabled = enabled
        self.console = Console(stderr=True)
        self._live: Optional[Live] = None
        self._elapsed = 0.0

    def __enter__(self) -> "ProgressView":
        if self.enabled:
            self._live = Live(self._table({}), console=self.console, refresh_per_second=4,
                              transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)
            self._live = None

    def _table(self, status: dict[str, object]) -> Table:
        table = Table(title=f"capture {status.get('name', '')}", show_header=True)
        for column in ("status", "packets", "bytes", "dropped", "elapsed / limit", "file"):
            table.add_column(column)
        elapsed = _number(status.get("elapsedSeconds"))
        table.add_row(str(status.get("packetCaptureStatus", "Starting")),
                      f"{status.get('packetsCaptured', 0):,}", _size(status.get("bytesWritten")),
                      f"{status.get('packetsDropped', 0):,}",
                      f"{elapsed:.1f} s / {self.time_limit:g} s",
                      str(status.get("localPath") or ""))
        return table

    def update(self, status: dict[str, object]) -> None:
        if self._live is not None:
            self._live.update(self._table(status))

    def summary(self, status: dict[str, object]) -> None:
        reason = status.get("stopReason") or ""
        self.console.print(f"{status.get('packetCaptureStatus')} ({reason}): "
                           f"{status.get('packetsCaptured', 0):,} packets, "
                           f"{_size(status.get('bytesWritten'))} in {status.get('localPath')}, "
                           f"{status.get('packetsDropped', 0):,} dropped by the kernel")
