"""destination.address: an IP literal, a host name, or an http(s) URL with its path encoded."""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any, Optional, Union
from urllib.parse import SplitResult, quote, urlsplit

from connectivity import errors as E
from connectivity.shape import Problems, bad_character, show

FIELD = "destination.address"
MAX_ADDRESS = 2048
IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")
# What a browser leaves as it is in a path or query (WHATWG URL percent-encode sets): printable
# ASCII except " < > ` { } '; everything else (non-ASCII) goes out as UTF-8 %XX.
_KEEP = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in "\"<>`{}'")


@dataclass(frozen=True)
class Address:
    host: str                 # an IP literal (no brackets) or an ASCII host name
    port: Optional[int] = None   # from a URL
    protocol: str = ""        # "Http"/"Https" from a URL's scheme
    target: str = "/"         # a URL's path and query, percent-encoded: ASCII only

    @property
    def is_url(self) -> bool:
        return bool(self.protocol)


def parse_address(value: Any, bad: Problems) -> Optional[Address]:
    """The address, or None after adding the problem (with what to change) to `bad`."""
    kind = E.InvalidDestination
    if not isinstance(value, str):
        bad.add(FIELD, f"must be a string (an IP address, host name or http(s) URL), got "
                f"{show(value)}", kind)
        return None
    text = value.strip(" ")
    if not text:
        bad.add(FIELD, "is required: an IP address, host name or URL", kind)
        return None
    if len(text) > MAX_ADDRESS:
        bad.add(FIELD, f"is {len(text)} characters long (at most {MAX_ADDRESS})", kind)
        return None
    problem = bad_character(text)
    if problem:
        bad.add(FIELD, f"contains a {problem}: remove it", kind)
        return None
    return _url(text, bad) if "://" in text else _host_or_ip(text, bad)


def ip_or_none(text: str) -> Optional[IPAddress]:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def is_hostname(text: str) -> bool:
    name = text[:-1] if text.endswith(".") else text
    if not name or len(name) > 253 or name.replace(".", "").isdigit():
        return False
    return all(_LABEL.match(label) for label in name.split("."))


def _host_or_ip(text: str, bad: Problems) -> Optional[Address]:
    if text.startswith("[") or text.endswith("]"):
        inner = text[1:-1] if text.startswith("[") and text.endswith("]") else ""
        literal = ip_or_none(inner)
        if literal is None or literal.version != 6:
            bad.add(FIELD, f"{show(text)}: brackets are only for an IPv6 address, as in "
                    "[fd00::1]", E.InvalidDestination)
            return None
        return Address(inner)
    if ip_or_none(text) is None and not is_hostname(text):
        bad.add(FIELD, f"{show(text)} is not an IP address, host name or http(s) URL"
                f"{_ascii_hint(text)}", E.InvalidDestination)
        return None
    return Address(text)


def _url(text: str, bad: Problems) -> Optional[Address]:
    kind = E.InvalidDestination
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        bad.add(FIELD, f"malformed URL {show(text)}: {exc}", kind)
        return None
    problem = _url_problem(text, parts, port)
    if problem:
        bad.add(FIELD, problem, kind)
        return None
    target = quote(parts.path or "/", safe=_KEEP)
    if parts.query:
        target += "?" + quote(parts.query, safe=_KEEP)
    protocol = "Https" if parts.scheme.lower() == "https" else "Http"
    return Address(parts.hostname or "", port, protocol, target)


def _url_problem(text: str, parts: SplitResult, port: Optional[int]) -> str:
    host = parts.hostname or ""
    if parts.scheme.lower() not in ("http", "https"):
        return f"URL scheme {parts.scheme!r} is not http or https"
    if " " in text:
        return f"the URL contains a space at position {text.index(' ')}: write it as %20"
    if parts.username or parts.password:
        return "URL must not carry credentials"
    if "[" in parts.netloc or "]" in parts.netloc:
        literal = ip_or_none(host)
        if literal is None or literal.version != 6:
            return f"URL {show(text)}: brackets are only for an IPv6 address, as in " \
                   "http://[fd00::1]/"
        return ""
    if not host or (ip_or_none(host) is None and not is_hostname(host)):
        return f"URL {show(text)} has no valid host{_ascii_hint(host)}"
    if port == 0:
        return f"URL {show(text)} has port 0: give 1-65535, or no port for the scheme's default"
    return ""


def _ascii_hint(text: str) -> str:
    """For an international name: the ASCII (IDNA) form a resolver can look up."""
    if not text or text.isascii():
        return ""
    try:
        ascii_form = text.encode("idna").decode("ascii")
    except (UnicodeError, ValueError):
        return "; a host name must be ASCII (an international name in its IDNA form, xn--...)"
    return f"; give its ASCII (IDNA) form {ascii_form!r}"
