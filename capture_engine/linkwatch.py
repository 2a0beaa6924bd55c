"""Watching the capture's interfaces: which went down or away, and which enslaved one is back."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

from capture_engine.interfaces import Link, LinkTable

log = logging.getLogger(__name__)
UP, DOWN, GONE = "up", "down", "gone"
CHECK_EVERY = 0.5  # seconds between two looks at the interfaces


@dataclass(frozen=True)
class LinkChange:
    name: str
    state: str        # DOWN, GONE, or UP for an enslaved interface that is back
    required: bool    # a required interface going down or away ends the capture
    index: int = 0    # the ifindex it has now (UP only)

    def describe(self) -> str:
        if self.state == DOWN:
            return f"capture interface {self.name} was set down"
        if self.state == GONE:
            return f"capture interface {self.name} was removed"
        return f"capture interface {self.name} is back"


class LinkWatch:
    """Compares the capture interfaces with what they were at the start.

    Enslaved interfaces (Azure's VF under its synthetic NIC, a bond or bridge port) are
    optional: they come and go with host servicing, and their traffic is also seen on the
    master. Every other capture interface is required.
    """

    def __init__(self, table: LinkTable, links: dict[str, Link], names: Sequence[str]) -> None:
        self.table = table
        self.optional = {name for name in names if links[name].enslaved}
        self._index = {name: links[name].index for name in names}
        self._state = {name: UP if links[name].up else DOWN for name in names}

    def check(self) -> list[LinkChange]:
        """What changed since the last look: required or optional interfaces gone down or
        away (reported once each), and optional ones back up under a new index."""
        try:
            links = self.table.links()
        except OSError as exc:
            log.warning("cannot list the network interfaces: %s", exc)
            return []
        changes = []
        for name, index in self._index.items():
            link, old = links.get(name), self._state[name]
            if old == GONE:
                if link is not None and link.up:
                    changes.append(LinkChange(name, UP, False, link.index))
                continue
            new = GONE if link is None or link.index != index else UP if link.up else DOWN
            if new != old:
                self._state[name] = new
                if new != UP:
                    changes.append(LinkChange(name, new, name not in self.optional))
        return changes

    def reattached(self, name: str, index: int) -> None:
        """The capture has a new source on `name` (which now has ifindex `index`)."""
        self._index[name], self._state[name] = index, UP

    def close(self) -> None:
        self.table.close()
