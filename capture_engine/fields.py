"""Settings objects as ARM reads them: names in any case, blank = unset, typos refused."""
from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass, field
from typing import Any, Collection, Mapping, Optional, Sequence

from capture_engine.errors import InvalidSettingsError, ProblemList

SHOWN_CHARS = 40
MAX_UNKNOWN_REPORTED = 5
# Read-only properties of an ARM resource: a GET answer sent back must not be refused for them.
READ_ONLY = ("resourceId",)
PRINTABLE = re.compile(r"[ -~]*", re.ASCII)
ASCII_DIGITS = re.compile(r"[0-9]+", re.ASCII)
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# ASCII whitespace only: str.strip() would also take U+0085, U+3000... as "spaces".
SPACE = " \t\r\n\f\v"


def shown(value: Any) -> str:
    """A short, safe rendering of a user value for a message: never huge, never recursive."""
    if isinstance(value, str):
        text = value if len(value) <= SHOWN_CHARS else value[:SHOWN_CHARS] + "..."
        suffix = f" ({len(value):,} characters)" if len(value) > SHOWN_CHARS else ""
        return repr(text) + suffix
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, int):
        if abs(value) < 10 ** 18:
            return str(value)
        return f"a number of about {int(value.bit_length() * math.log10(2)) + 1:,} digits"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    return f"a value of type {type(value).__name__}"


def key_text(key: Any) -> str:
    """A dict key as it may appear in a problem path: printable, short."""
    if isinstance(key, str) and len(key) <= SHOWN_CHARS and PRINTABLE.fullmatch(key):
        return key
    return shown(key)


def blank(value: Any) -> bool:
    """An empty (or all-space) string means "not set", as ARM reads it."""
    return isinstance(value, str) and not value.strip(SPACE)


def whole_number(raw: Any) -> Optional[int]:
    """An int from an int, an integral float or a string of ASCII digits; None otherwise.

    Only ASCII digits: int() also takes other scripts' digits. A string too long to be any
    of our limits becomes a number past them without converting it (int() refuses > 4300
    digits and is quadratic below that)."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float):
        return int(raw) if math.isfinite(raw) and raw.is_integer() else None
    if not isinstance(raw, str):
        return None
    text = raw.strip(SPACE)
    sign = -1 if text.startswith("-") else 1
    digits = text[1:] if sign < 0 else text
    if not ASCII_DIGITS.fullmatch(digits):
        return None
    digits = digits.lstrip("0") or "0"
    return sign * (10 ** 20 if len(digits) > 20 else int(digits))


@dataclass
class Fields:
    """One settings object after name matching: canonical name -> value, and its path."""

    values: dict[str, Any] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def path(self, key: str) -> str:
        return self.paths.get(key, key)

    def __contains__(self, key: str) -> bool:
        return key in self.values

    def given(self, key: str) -> bool:
        """The name appeared, even with a blank value."""
        return key in self.paths


def _closest(key: str, known: Sequence[str]) -> Optional[str]:
    lowered = {name.lower(): name for name in known}
    found = difflib.get_close_matches(key.lower()[:64], list(lowered), n=1, cutoff=0.4)
    return lowered[found[0]] if found else None


def _unknown(key: Any, known: Sequence[str], path: str, problems: ProblemList) -> None:
    guess = _closest(key, known) if isinstance(key, str) else None
    hint = f"did you mean '{guess}'?" if guess else f"known: {', '.join(known)}"
    problems.add(path + key_text(key), f"unknown field ({hint})", InvalidSettingsError)


def read_fields(obj: Mapping[Any, Any], known: Sequence[str], path: str,
                problems: ProblemList, ignored: Collection[str] = (),
                into: Optional[Fields] = None) -> Fields:
    """Match `obj`'s keys to `known` ignoring ASCII case; drop blank values and `ignored`
    (read-only) names; refuse unknown names with the closest known one, and duplicates."""
    fields = into if into is not None else Fields()
    by_lower = {name.lower(): name for name in known}
    skip = {name.lower() for name in (*ignored, *READ_ONLY)}
    unknown = 0
    for key, value in obj.items():
        lowered = key.lower() if isinstance(key, str) and key.isascii() else None
        name = by_lower.get(lowered) if lowered is not None else None
        if name is None:
            if lowered not in skip:
                unknown += 1
                if unknown <= MAX_UNKNOWN_REPORTED:
                    _unknown(key, known, path, problems)
            continue
        if name in fields.paths:
            problems.add(path + key_text(key), f"'{name}' is given twice: as "
                         f"{fields.paths[name]} and as {path + key_text(key)}",
                         InvalidSettingsError)
            continue
        if not blank(value):
            fields.values[name] = value
        fields.paths[name] = path + key_text(key)
    if unknown > MAX_UNKNOWN_REPORTED:
        problems.add(path.rstrip(".") or "packetCapture",
                     f"{unknown - MAX_UNKNOWN_REPORTED:,} more unknown fields",
                     InvalidSettingsError)
    return fields
