"""protocolConfiguration.HTTPConfiguration: method, headers a probe can send, valid codes."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Optional

from connectivity import errors as E
from connectivity.shape import Problems, bad_character, choice, fields, show

HTTP_METHODS = ("Get", "Head")
WHERE = "protocolConfiguration.HTTPConfiguration"
MAX_HEADERS = 100            # what common servers accept (Python's http.server refuses more)
MAX_NAME, MAX_VALUE, MAX_HEADER_BYTES = 256, 8192, 16384
MAX_STATUS_CODES = 500       # one per status code 100-599
# The probe sends no body: a framing header would make the server wait for one.
NO_BODY_HEADERS = ("content-length", "transfer-encoding")
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
KIND = E.InvalidHttpConfiguration


@dataclass(frozen=True)
class HttpConfiguration:
    method: str = "Get"
    headers: tuple[tuple[str, str], ...] = ()
    valid_status_codes: tuple[int, ...] = ()
    path: str = "/"          # the request target, percent-encoded (ASCII only)


def parse_http(config: Any, protocol: str, path: str, bad: Problems) -> Optional[HttpConfiguration]:
    """The HTTP settings of an Http/Https check (defaults when absent); None for the others."""
    default = HttpConfiguration(path=path) if protocol in ("Http", "Https") else None
    if config is None:
        return default
    if not isinstance(config, dict):
        bad.add("protocolConfiguration", f"must be an object with HTTPConfiguration, got "
                f"{show(config)}", KIND)
        return None
    http = fields(config, ("HTTPConfiguration",), "protocolConfiguration", bad, KIND).get(
        "HTTPConfiguration")
    if http is None:
        return default
    if protocol not in ("Http", "Https"):
        bad.add(WHERE, f"is only allowed with protocol Http or Https, not "
                f"{protocol or 'an unknown protocol'}", E.HttpConfigurationNotAllowed)
        return None
    if not isinstance(http, dict):
        bad.add(WHERE, f"must be an object, got {show(http)}", KIND)
        return None
    given = fields(http, ("method", "headers", "validStatusCodes"), WHERE, bad, KIND)
    method = choice(given.get("method", "Get"), f"{WHERE}.method", HTTP_METHODS, bad, KIND)
    headers = _headers(given.get("headers", []), bad)
    codes = _status_codes(given.get("validStatusCodes", []), bad)
    return HttpConfiguration(method or "Get", headers, codes, path)


def _headers(value: Any, bad: Problems) -> tuple[tuple[str, str], ...]:
    where = f"{WHERE}.headers"
    if not isinstance(value, list):
        bad.add(where, f"must be a list of {{name, value}}, got {show(value)}", KIND)
        return ()
    if len(value) > MAX_HEADERS:
        bad.add(where, f"has {len(value)} entries (at most {MAX_HEADERS})", KIND)
        return ()
    found: list[tuple[str, str]] = []
    for i, item in enumerate(value):
        path = f"{where}[{i}]"
        if not isinstance(item, dict):
            bad.add(path, f"must be an object {{name, value}}, got {show(item)}", KIND)
            continue
        # An empty value is a valid header value, not a missing one.
        given = fields(item, ("name", "value"), path, bad, KIND, empty_is_unset=False)
        name = _header_name(given.get("name"), f"{path}.name", bad)
        text = _header_value(given.get("value"), f"{path}.value", bad)
        if name and text is not None:
            found.append((name, text))
    size = sum(len(n) + len(v) + 4 for n, v in found)
    if size > MAX_HEADER_BYTES:
        bad.add(where, f"add up to {size} bytes (at most {MAX_HEADER_BYTES}; servers refuse "
                "larger request headers)", KIND)
    return tuple(found)


def _header_name(value: Any, path: str, bad: Problems) -> str:
    if value is None:
        bad.add(path, "is required", KIND)
    elif not isinstance(value, str) or len(value) > MAX_NAME or not _TOKEN.match(value):
        bad.add(path, "must be an HTTP token of at most 256 letters, digits and "
                f"!#$%&'*+-.^_`|~, got {show(value)}", KIND)
    elif value.lower() in NO_BODY_HEADERS:
        bad.add(path, f"{value} describes a request body and the probe sends none: remove it",
                KIND)
    else:
        return value
    return ""


def _header_value(value: Any, path: str, bad: Problems) -> Optional[str]:
    """Latin-1 text without control characters (tab allowed): all HTTP/1.1 can carry."""
    problem = ""
    if value is None:
        problem = "is required (an empty string is an empty value)"
    elif not isinstance(value, str):
        problem = f"must be a string, got {show(value)}"
    elif len(value) > MAX_VALUE:
        problem = f"is {len(value)} characters long (at most {MAX_VALUE})"
    elif bad_character(value, allow_tab=True):
        problem = f"contains a {bad_character(value, allow_tab=True)}: remove it"
    else:
        wide = next((c for c in value if ord(c) > 0xFF), "")
        if not wide:
            return value
        problem = f"contains {wide!r} (U+{ord(wide):04X}), which is not Latin-1 (ISO-8859-1), " \
                  "the only text an HTTP header value can carry: percent-encode it or remove it"
    bad.add(path, problem, KIND)
    return None


def _status_codes(value: Any, bad: Problems) -> tuple[int, ...]:
    where = f"{WHERE}.validStatusCodes"
    if not isinstance(value, list):
        bad.add(where, f"must be a list of status codes 100-599, got {show(value)}", KIND)
        return ()
    if len(value) > MAX_STATUS_CODES:
        bad.add(where, f"has {len(value)} entries (at most {MAX_STATUS_CODES})", KIND)
        return ()
    wrong = [i for i, code in enumerate(value) if isinstance(code, bool)
             or not isinstance(code, int) or not 100 <= code <= 599]
    if wrong:
        more = f" ({len(wrong) - 1} more entries are wrong too)" if len(wrong) > 1 else ""
        bad.add(f"{where}[{wrong[0]}]", f"must be a status code 100-599, got "
                f"{show(value[wrong[0]])}{more}", KIND)
        return ()
    return tuple(value)
