"""Parse the connectivityCheck settings object into a frozen ConnectivityRequest."""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from connectivity import errors as E
from plumbing.redact import redact_patterns

DEFAULT_PROBES = 10
MAX_PROBES = 100
PROTOCOLS = ("Tcp", "Http", "Https", "Icmp")
IP_VERSIONS = ("IPv4", "IPv6")
HTTP_METHODS = ("Get", "Head")
DEFAULT_PORTS = {"Http": 80, "Https": 443}
TOP_KEYS = {"source", "destination", "protocol", "protocolConfiguration", "preferredIPVersion",
            "probes"}
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


@dataclass(frozen=True)
class HttpConfiguration:
    method: str = "Get"
    headers: tuple[tuple[str, str], ...] = ()
    valid_status_codes: tuple[int, ...] = ()
    path: str = "/"


@dataclass(frozen=True)
class ConnectivityRequest:
    """What to check; `host` is an IP literal or a host name (a URL is split at parse time)."""

    host: str
    port: int
    protocol: str = "Tcp"
    source_port: int | None = None
    http: HttpConfiguration | None = None
    ip_version: str | None = None
    probes: int = DEFAULT_PROBES
    address_text: str = field(default="", compare=False)

    @property
    def is_ip_literal(self) -> bool:
        return _ip_or_none(self.host) is not None


class _Problems:
    def __init__(self) -> None:
        self.items: list[tuple[str, str, int]] = []

    def add(self, path: str, message: str, kind: type) -> None:
        self.items.append((path, redact_patterns(message), kind.code))


def parse_request(obj: Any) -> ConnectivityRequest:
    """Validate shape, then cross-field rules; raise ConnectivityRequestError naming every field."""
    bad = _Problems()
    if not isinstance(obj, dict):
        bad.add("connectivityCheck", "must be an object", E.InvalidSettings)
        raise E.ConnectivityRequestError(bad.items)
    for key in sorted(set(obj) - TOP_KEYS):
        bad.add(key, f"unknown field (known: {', '.join(sorted(TOP_KEYS))})", E.InvalidSettings)
    protocol = _protocol(obj.get("protocol"), bad)
    dest = _object(obj, "destination", bad, required=True)
    host, url_port, url_scheme, path = "", None, "", "/"
    has_dest = isinstance(obj.get("destination"), dict)
    if has_dest:  # a missing destination is one problem, not three
        host, url_port, url_scheme, path = _destination(dest.get("address"), bad)
    if obj.get("protocol") is None and url_scheme:
        protocol = url_scheme
    is_url = "://" in str(dest.get("address", ""))  # a URL brings its own default port
    port = _port(dest.get("port"), "destination.port", bad, required=has_dest and
                 protocol == "Tcp" and not is_url)
    port = port or url_port or DEFAULT_PORTS.get(url_scheme or protocol or "", 0)
    source = _object(obj, "source", bad, required=False)
    source_port = _port(source.get("port"), "source.port", bad, required=False, allow_zero=True)
    http = _http(obj.get("protocolConfiguration"), protocol, path, bad)
    version = obj.get("preferredIPVersion")
    if version is not None and version not in IP_VERSIONS:
        bad.add("preferredIPVersion", f"must be one of {', '.join(IP_VERSIONS)}, got {version!r}",
                E.InvalidIPVersion)
    probes = _probes(obj.get("probes"), bad)
    if host and version in IP_VERSIONS and _ip_or_none(host) is not None:
        literal = _ip_or_none(host)
        if literal is not None and literal.version != int(version[-1]):
            bad.add("preferredIPVersion", f"{version} requested but destination {host} is "
                    f"IPv{literal.version}", E.InvalidIPVersion)
    if bad.items:
        raise E.ConnectivityRequestError(bad.items)
    return ConnectivityRequest(host=host, port=port, protocol=protocol, source_port=source_port
                               or None, http=http, ip_version=version, probes=probes,
                               address_text=str(dest.get("address")))


def _object(obj: dict[str, Any], key: str, bad: _Problems, required: bool) -> dict[str, Any]:
    value = obj.get(key)
    if value is None:
        if required:
            bad.add(key, "is required", E.InvalidDestination)
        return {}
    if not isinstance(value, dict):
        bad.add(key, "must be an object", E.InvalidSettings)
        return {}
    return value


def _protocol(value: Any, bad: _Problems) -> str:
    if value is None:
        return "Tcp"
    for name in PROTOCOLS:
        if isinstance(value, str) and value.lower() == name.lower():
            return name
    bad.add("protocol", f"unknown protocol {value!r} (use {', '.join(PROTOCOLS)})",
            E.InvalidProtocol)
    return ""


def _destination(value: Any, bad: _Problems) -> tuple[str, int | None, str, str]:
    """Returns host, port from a URL, scheme-derived protocol, path."""
    path = "destination.address"
    if not isinstance(value, str) or not value.strip():
        bad.add(path, "is required: an IP address, host name or URL", E.InvalidDestination)
        return "", None, "", "/"
    text = value.strip()
    if "://" in text:
        return _url(text, bad)
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if _ip_or_none(text) is None and not _is_hostname(text):
        bad.add(path, f"{value!r} is not an IP address, host name or http(s) URL",
                E.InvalidDestination)
        return "", None, "", "/"
    return text, None, "", "/"


def _url(text: str, bad: _Problems) -> tuple[str, int | None, str, str]:
    path = "destination.address"
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        bad.add(path, f"malformed URL: {exc}", E.InvalidDestination)
        return "", None, "", "/"
    host = parts.hostname or ""
    if parts.scheme.lower() not in ("http", "https"):
        bad.add(path, f"URL scheme {parts.scheme!r} is not http or https", E.InvalidDestination)
    elif not host or (_ip_or_none(host) is None and not _is_hostname(host)):
        bad.add(path, f"URL {text!r} has no valid host", E.InvalidDestination)
    elif parts.username or parts.password:
        bad.add(path, "URL must not carry credentials", E.InvalidDestination)
    else:
        resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return host, port, "Https" if parts.scheme.lower() == "https" else "Http", resource
    return "", None, "", "/"


def _is_hostname(text: str) -> bool:
    name = text.removesuffix(".")
    if not name or len(name) > 253 or name.replace(".", "").isdigit():
        return False
    return all(_LABEL.match(label) for label in name.split("."))


def _ip_or_none(text: str) -> Any | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _port(value: Any, path: str, bad: _Problems, required: bool,
          allow_zero: bool = False) -> int | None:
    if value is None:
        if required:
            bad.add(path, "is required for a Tcp check (1-65535)", E.InvalidPort)
        return None
    low = 0 if allow_zero else 1
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= 65535:
        bad.add(path, f"must be an integer {low}-65535, got {value!r}", E.InvalidPort)
        return None
    return value


def _probes(value: Any, bad: _Problems) -> int:
    if value is None:
        return DEFAULT_PROBES
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PROBES:
        bad.add("probes", f"must be an integer 1-{MAX_PROBES}, got {value!r}",
                E.InvalidProbeCount)
        return DEFAULT_PROBES
    return value


def _http(config: Any, protocol: str, path: str, bad: _Problems) -> HttpConfiguration | None:
    where = "protocolConfiguration"
    if config is None or config == {}:
        return HttpConfiguration(path=path) if protocol in ("Http", "Https") else None
    if not isinstance(config, dict) or set(config) - {"HTTPConfiguration"}:
        bad.add(where, "must be an object with only HTTPConfiguration", E.InvalidHttpConfiguration)
        return None
    if protocol not in ("Http", "Https"):
        bad.add(f"{where}.HTTPConfiguration", f"is only allowed with protocol Http or Https, "
                f"not {protocol or 'an unknown protocol'}", E.HttpConfigurationNotAllowed)
        return None
    http = config.get("HTTPConfiguration")
    if not isinstance(http, dict):
        bad.add(f"{where}.HTTPConfiguration", "must be an object", E.InvalidHttpConfiguration)
        return None
    return _http_fields(http, f"{where}.HTTPConfiguration", path, bad)


def _http_fields(http: dict[str, Any], where: str, path: str,
                 bad: _Problems) -> HttpConfiguration | None:
    kind = E.InvalidHttpConfiguration
    for key in sorted(set(http) - {"method", "headers", "validStatusCodes"}):
        bad.add(f"{where}.{key}", "unknown field", kind)
    method = http.get("method", "Get")
    if not isinstance(method, str) or method.capitalize() not in HTTP_METHODS:
        bad.add(f"{where}.method", f"must be one of {', '.join(HTTP_METHODS)}", kind)
    headers: list[tuple[str, str]] = []
    raw_headers = http.get("headers", [])
    if not isinstance(raw_headers, list):
        bad.add(f"{where}.headers", "must be a list of {name, value}", kind)
        raw_headers = []
    for i, item in enumerate(raw_headers):
        name = item.get("name") if isinstance(item, dict) else None
        value = item.get("value") if isinstance(item, dict) else None
        if not isinstance(name, str) or not _TOKEN.match(name) or not isinstance(value, str) \
                or "\r" in value or "\n" in value:
            bad.add(f"{where}.headers[{i}]", "needs a token name and a single-line value", kind)
        else:
            headers.append((name, value))
    codes = http.get("validStatusCodes", [])
    if not isinstance(codes, list) or not all(
            isinstance(c, int) and not isinstance(c, bool) and 100 <= c <= 599 for c in codes):
        bad.add(f"{where}.validStatusCodes", "must be a list of status codes 100-599", kind)
        codes = []
    return HttpConfiguration(method=str(method).capitalize(), headers=tuple(headers),
                             valid_status_codes=tuple(codes), path=path)
