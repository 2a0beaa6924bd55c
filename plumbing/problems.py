"""The one settings-problem collector: every problem of a request, each with the path of its
field, a message that never echoes a secret, and the code of the capability's table."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional


@dataclass(frozen=True)
class Problem:
    path: str     # the field, e.g. "filters[0].localPort" ("" when the message names it)
    message: str  # what is wrong and what to change; never the value of a secret
    code: int     # the capability's number for this kind of problem


class ProblemCollector:
    """Collects while a parser walks its object, so every problem is reported at once; each
    capability raises its own settings error from `found`."""

    def __init__(self, clean: Optional[Callable[[str], str]] = None) -> None:
        self.found: list[Problem] = []
        self._clean = clean or (lambda text: text)

    def add(self, path: str, message: str, code: int) -> None:
        self.found.append(Problem(path, self._clean(message), code))

    def __bool__(self) -> bool:
        return bool(self.found)

    def __len__(self) -> int:
        return len(self.found)
