"""Untrusted settings values: bounded JSON, typed field checks, and messages that never echo."""
from __future__ import annotations

import json
import math
import re
from typing import Any, Callable, TypeVar

from plumbing.problems import ProblemCollector
from snapshot.errors import Code, SnapshotSettingsError

MAX_DIGITS = 30  # no field needs a longer number; longer ones cost quadratic time to convert
MAX_NUMBER_TEXT = 40
# C0/C1 control characters (NUL, newline, escape...) and lone surrogates (not encodable).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_PRINTABLE_ASCII = re.compile(r"^[\x20-\x7e]*$")
T = TypeVar("T")


class FieldError(ValueError):
    """One bad field: its code and a message that names the field and never echoes its value."""

    def __init__(self, message: str, code: int = Code.PARAMETER_ERROR) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class Problems(ProblemCollector):
    """The snapshot parser's collector (its messages name their field)."""

    def note(self, message: str, code: int = Code.PARAMETER_ERROR) -> None:
        self.add("", message, code)

    def check(self, default: T, check: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """check(*args, **kwargs), or `default` with its FieldError recorded."""
        try:
            return check(*args, **kwargs)
        except FieldError as exc:
            self.add("", exc.message, exc.code)
            return default

    def raise_if_any(self) -> None:
        """One error listing every problem: their common code, else parameter error (11)."""
        if not self.found:
            return
        codes = {p.code for p in self.found}
        code = codes.pop() if len(codes) == 1 else Code.PARAMETER_ERROR
        raise SnapshotSettingsError([p.message for p in self.found], code)


def describe(value: Any) -> str:
    """What a value is (type and size), never its content: safe for any message."""
    if value is None:
        return "null"
    if isinstance(value, OversizedNumber):
        return f"a number written with {value.length} characters"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):  # never str() an int of unknown size: that is quadratic
        return "an integer" if -10**18 < value < 10**18 else "an integer of over 18 digits"
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else ("an infinite number" if math.isinf(value)
                                                  else "a fractional number")
    if isinstance(value, str):
        return f"a string of {len(value)} character(s)" if value else "an empty string"
    if isinstance(value, (list, tuple)):
        return f"a list of {len(value)} item(s)"
    if isinstance(value, dict):
        return f"an object with {len(value)} key(s)"
    return f"a value of type {type(value).__name__}"


def preview(value: Any) -> str:
    """A short quoted preview of a non-secret string (enum-like fields), else describe()."""
    if isinstance(value, str) and 0 < len(value) <= 40 and _PRINTABLE_ASCII.match(value):
        return repr(value)
    return describe(value)


def text(value: Any, name: str, *, required: bool, max_len: int, ascii_only: bool = False,
         code: int = Code.PARAMETER_ERROR) -> str:
    """A bounded single-line string without control characters ('' when optional and absent)."""
    if value is None or (isinstance(value, str) and not value.strip() and not _CONTROL.search(
            value)):
        if required:
            raise FieldError(f"{name} is missing or empty", code)
        return ""
    if not isinstance(value, str):
        raise FieldError(f"{name} must be a string, not {describe(value)}", code)
    if len(value) > max_len:
        raise FieldError(f"{name} is {describe(value)}, over the limit of {max_len}", code)
    if _CONTROL.search(value):
        raise FieldError(f"{name} contains control characters (NUL, newline, ...) or invalid "
                         "unicode", code)
    if ascii_only and not _PRINTABLE_ASCII.match(value):
        raise FieldError(f"{name} must be printable ASCII", code)
    return value.strip()


def whole_number(value: Any, name: str, low: int, high: int,
                 code: int = Code.PARAMETER_ERROR) -> int:
    """An integer in [low, high]: a JSON integer, an integral finite float or a digit string."""
    number = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and 0 < len(value.strip()) <= 12 and value.strip().isascii() \
            and value.strip().isdigit():  # ASCII only: int() refuses "²", which isdigit takes
        number = int(value.strip())
    if number is None or not low <= number <= high:
        raise FieldError(f"{name} must be a whole number from {low} to {high}, not "
                         f"{describe(value)}", code)
    return number


def flag(value: Any, name: str, default: bool = False,
         code: int = Code.PARAMETER_ERROR) -> bool:
    """true/false, or the strings "true"/"false" in any case; absent means `default`."""
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise FieldError(f"{name} must be true or false, not {describe(value)}", code)


def record(value: Any, name: str, code: int = Code.PARAMETER_ERROR) -> dict[str, Any]:
    """A JSON object (absent: empty)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise FieldError(f"{name} must be an object, not {describe(value)}", code)
    return value


class OversizedNumber:
    """Stands in for a JSON number too long to convert: every field rejects it by its type."""

    def __init__(self, length: int) -> None:
        self.length = length


def _int(token: str) -> Any:
    return OversizedNumber(len(token)) if len(token.lstrip("-")) > MAX_DIGITS else int(token)


def _float(token: str) -> Any:
    return OversizedNumber(len(token)) if len(token) > MAX_NUMBER_TEXT else float(token)


def load_json(source: str, name: str, max_chars: int,
              code: int = Code.PARAMETER_ERROR) -> Any:
    """json.loads, bounded in size and nesting; a number too long to convert becomes an
    OversizedNumber (the field holding it reports it), NaN/Infinity stay floats (likewise)."""
    if len(source) > max_chars:
        raise FieldError(f"{name} is {describe(source)}, over the limit of {max_chars}", code)
    try:
        return json.loads(source, parse_int=_int, parse_float=_float)
    except RecursionError:
        raise FieldError(f"{name} is nested too deeply", code) from None
    except json.JSONDecodeError as exc:
        raise FieldError(f"{name} is not valid JSON ({exc.msg} at character {exc.pos})",
                         code) from None
    except ValueError:
        raise FieldError(f"{name} is not valid JSON", code) from None
