"""Reading a settings object as ARM does: names in any case, "" as not set, typos named."""
from __future__ import annotations

import difflib
import math
import re
from typing import Any, Optional

from connectivity import errors as E
from plumbing.problems import ProblemCollector
from plumbing.redact import redact_patterns

SHOWN_CHARS = 60
MAX_TEXT = 1024           # read-only properties and resource IDs
MAX_UNKNOWN_NAMED = 5     # unknown fields named one by one in an object; the rest counted
# C0 and C1 controls, DEL, and lone surrogates (which no encoding can carry).
_BAD_CHARACTER = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


class Problems:
    """The check parser's view of the shared collector: messages pass the credential
    patterns, a problem is named by its error class, whose code it carries."""

    def __init__(self) -> None:
        self.collected = ProblemCollector(redact_patterns)

    def add(self, path: str, message: str, kind: type[E.ConnectivityError]) -> None:
        self.collected.add(path, message, kind.code)

    def raise_if_any(self) -> None:
        found = self.collected.found
        if found:
            raise E.ConnectivityRequestError([(p.path, p.message, p.code) for p in found])


def show(value: Any) -> str:
    """A short description of any value for a message: never a huge or recursive repr."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, int):
        if value.bit_length() > 64:  # str() of a 10**6-digit number raises on Python 3.11
            digits = int(value.bit_length() * math.log10(2)) + 1
            return f"a {'negative ' if value < 0 else ''}number of about {digits} digits"
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        if len(value) > SHOWN_CHARS:
            return f"{value[:SHOWN_CHARS]!r}... ({len(value)} characters)"
        return repr(value)
    if isinstance(value, list):
        return f"a list of {len(value)}"
    return "an object" if isinstance(value, dict) else f"a {type(value).__name__}"


def bad_character(text: str, allow_tab: bool = False) -> str:
    """The first control character or lone surrogate in text, described; else ""."""
    for found in _BAD_CHARACTER.finditer(text):
        if allow_tab and found.group() == "\t":
            continue
        code = ord(found.group())
        kind = "invalid character (a lone surrogate)" if code >= 0xD800 else \
            "control character"
        return f"{kind} U+{code:04X} at position {found.start()}"
    return ""


def fields(obj: dict[Any, Any], known: tuple[str, ...], where: str, bad: Problems,
           kind: type[E.ConnectivityError], empty_is_unset: bool = True) -> dict[str, Any]:
    """The object's fields under their canonical names; null and "" dropped (not set).

    Names match case-insensitively, as ARM reads them. A name given twice, or one we do not
    know, is a problem, with the closest known name: a typo never falls back to a default.
    """
    by_lower = {name.lower(): name for name in known}
    found: dict[str, Any] = {}
    spelled: dict[str, str] = {}
    strangers = 0
    for key, value in obj.items():
        text = key if isinstance(key, str) else show(key)
        name = by_lower.get(text.lower()) if isinstance(key, str) else None
        if name is None:
            strangers += 1
            if strangers <= MAX_UNKNOWN_NAMED:
                bad.add(join(where, _printable(text)), unknown(text, known), kind)
            continue
        if name in spelled:
            bad.add(join(where, name), f"given twice (as {spelled[name]!r} and "
                    f"{_printable(text)!r}): keep one", E.InvalidSettings)
            continue
        spelled[name] = _printable(text)
        if value is None or (empty_is_unset and isinstance(value, str) and value == ""):
            continue
        found[name] = value
    if strangers > MAX_UNKNOWN_NAMED:
        bad.add(where or "connectivityCheck", f"has {strangers - MAX_UNKNOWN_NAMED} more "
                f"unknown fields (known: {', '.join(known)})", kind)
    return found


def unknown(name: str, known: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(name.lower()[:SHOWN_CHARS],
                                      [k.lower() for k in known], n=1, cutoff=0.6)
    if close:
        match = next(k for k in known if k.lower() == close[0])
        return f"unknown field; did you mean `{match}`?"
    return f"unknown field (known: {', '.join(known)})"


def join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _printable(text: str) -> str:
    if len(text) > SHOWN_CHARS or bad_character(text):
        return show(text)
    return text


def read_only(value: Any, path: str, bad: Problems) -> None:
    """id, name, etag, type, provisioningState: ignored, but must be sane text."""
    problem = _text_problem(value)
    if problem:
        bad.add(path, f"is a read-only resource property and ignored, but {problem}",
                E.InvalidSettings)


def resource_id(value: Any, path: str, bad: Problems, kind: type[E.ConnectivityError]) -> str:
    """An Azure resource ID ("/subscriptions/..."), echoed in the answer; "" when bad."""
    problem = _text_problem(value)
    if not problem and not value.lower().startswith("/subscriptions/"):
        problem = f"must be an Azure resource ID (/subscriptions/...), got {show(value)}"
    if problem:
        bad.add(path, problem, kind)
        return ""
    return str(value)


def _text_problem(value: Any) -> str:
    if not isinstance(value, str):
        return f"must be a string, got {show(value)}"
    if len(value) > MAX_TEXT:
        return f"is {len(value)} characters long (at most {MAX_TEXT})"
    problem = bad_character(value)
    return f"contains a {problem}: remove it" if problem else ""


def choice(value: Any, path: str, choices: tuple[str, ...], bad: Problems,
           kind: type[E.ConnectivityError]) -> str:
    """One of `choices`, matched case-insensitively as ARM reads enums; "" when bad."""
    if isinstance(value, str):
        for name in choices:
            if value.lower() == name.lower():
                return name
    bad.add(path, f"must be one of {', '.join(choices)}, got {show(value)}", kind)
    return ""


def integer(value: Any, path: str, low: int, high: int, bad: Problems,
            kind: type[E.ConnectivityError], note: str = "") -> Optional[int]:
    """An int (not a bool, not 80.0) in [low, high]; None when bad."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        bad.add(path, f"must be an integer {low}-{high}{note}, got {show(value)}", kind)
        return None
    return value
