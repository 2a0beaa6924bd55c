"""The one shape of "that failed": a code from the capability's table, a short title, a
message fit for the user (no secret), and optional structured detail."""
from __future__ import annotations

from typing import Any, Optional


class CodedError(Exception):
    """Base of every capability's errors. Subclasses set `code` and `title` as class
    attributes, declared in their package's errors.py table; an instance may override the
    code (a parser reporting a field's own number)."""

    code: int = 1
    title: str = "Error"

    def __init__(self, message: str, code: Optional[int] = None, *,
                 detail: Optional[dict[str, Any]] = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.detail: dict[str, Any] = dict(detail or {})

    def __str__(self) -> str:
        return self.message
