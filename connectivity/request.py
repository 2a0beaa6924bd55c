"""Parse the connectivityCheck settings object into a frozen ConnectivityRequest."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from connectivity import errors as E
from connectivity.address import Address, ip_or_none, parse_address
from connectivity.httpconfig import HTTP_METHODS, HttpConfiguration, parse_http
from connectivity.shape import Problems, choice, fields, integer, read_only, resource_id, show

__all__ = ["ConnectivityRequest", "HttpConfiguration", "HTTP_METHODS", "parse_request"]

DEFAULT_PROBES = 10
MAX_PROBES = 100
PROTOCOLS = ("Tcp", "Http", "Https", "Icmp")
IP_VERSIONS = ("IPv4", "IPv6")
DEFAULT_PORTS = {"Http": 80, "Https": 443}
# Read-only properties of the ARM resource: a caller that copies one sends them back.
READ_ONLY = ("id", "name", "etag", "type", "provisioningState")
TOP_FIELDS = ("source", "destination", "protocol", "protocolConfiguration",
              "preferredIPVersion", "probes") + READ_ONLY


@dataclass(frozen=True)
class ConnectivityRequest:
    """What to check; `host` is an IP literal or a host name (a URL is split at parse time)."""

    host: str
    port: int
    protocol: str = "Tcp"
    source_port: Optional[int] = None
    http: Optional[HttpConfiguration] = None
    ip_version: Optional[str] = None
    probes: int = DEFAULT_PROBES
    address_text: str = field(default="", compare=False)
    source_resource_id: str = ""        # echoed in the answer, never used to find anything
    destination_resource_id: str = ""

    @property
    def is_ip_literal(self) -> bool:
        return ip_or_none(self.host) is not None


def parse_request(obj: Any) -> ConnectivityRequest:
    """Validate shape, then cross-field rules; raise ConnectivityRequestError naming every field.

    Read as ARM reads a request body: property names in any case, "" and null as not set,
    read-only resource properties accepted and ignored, anything else unknown refused.
    """
    bad = Problems()
    if not isinstance(obj, dict):
        bad.add("connectivityCheck", f"must be an object, got {show(obj)}", E.InvalidSettings)
        bad.raise_if_any()
    top = fields(obj, TOP_FIELDS, "", bad, E.InvalidSettings)
    for name in READ_ONLY:
        if name in top:
            read_only(top[name], name, bad)
    protocol = choice(top["protocol"], "protocol", PROTOCOLS, bad, E.InvalidProtocol) \
        if "protocol" in top else "Tcp"
    raw_dest = _object(top, "destination", bad, E.InvalidDestination)
    dest = fields(raw_dest, ("address", "port", "resourceId"), "destination", bad,
                  E.InvalidDestination) if raw_dest is not None else None
    address, dest_id = _destination(dest, bad) if dest is not None else (None, "")
    if "protocol" not in top and address is not None and address.is_url:
        protocol = address.protocol
    port = _destination_port(dest, protocol, address, bad)
    source = _object(top, "source", bad, E.InvalidSettings) or {}
    source_port, source_id = _source(source, bad)
    http = parse_http(top.get("protocolConfiguration"), protocol,
                      address.target if address else "/", bad)
    version = choice(top["preferredIPVersion"], "preferredIPVersion", IP_VERSIONS, bad,
                     E.InvalidIPVersion) if "preferredIPVersion" in top else ""
    probes = integer(top.get("probes", DEFAULT_PROBES), "probes", 1, MAX_PROBES, bad,
                     E.InvalidProbeCount)
    literal = ip_or_none(address.host) if address else None
    if version and address and literal is not None and literal.version != int(version[-1]):
        bad.add("preferredIPVersion", f"{version} requested but destination {address.host} "
                f"is IPv{literal.version}", E.InvalidIPVersion)
    bad.raise_if_any()
    assert address is not None and probes is not None  # a bad one is a problem raised above
    return ConnectivityRequest(
        host=address.host, port=port, protocol=protocol, source_port=source_port or None,
        http=http, ip_version=version or None, probes=probes,
        address_text=str(dest.get("address")) if dest else "",
        source_resource_id=source_id, destination_resource_id=dest_id)


def _object(top: dict[str, Any], key: str, bad: Problems,
            kind: type[E.ConnectivityError]) -> Optional[dict[str, Any]]:
    value = top.get(key)
    if value is None:
        if key == "destination":
            bad.add(key, "is required: an object with address and port", kind)
        return None
    if not isinstance(value, dict):
        bad.add(key, f"must be an object, got {show(value)}", kind)
        return None
    return value


def _destination(given: dict[str, Any], bad: Problems) -> tuple[Optional[Address], str]:
    """The address (None when bad) and the echoed resource ID."""
    rid = resource_id(given["resourceId"], "destination.resourceId", bad,
                      E.InvalidDestination) if "resourceId" in given else ""
    if "address" in given:
        return parse_address(given["address"], bad), rid
    if rid:
        bad.add("destination.address", f"is required: destination.resourceId "
                f"({'/'.join(rid.rstrip('/').split('/')[-2:])}) cannot be resolved inside the "
                "VM, which has no access to Azure Resource Manager; set destination.address "
                "to that resource's IP address or host name", E.ResourceIdWithoutAddress)
    elif "resourceId" not in given:
        bad.add("destination.address", "is required: an IP address, host name or URL",
                E.InvalidDestination)
    return None, rid


def _destination_port(dest: Optional[dict[str, Any]], protocol: str, address: Optional[Address],
                      bad: Problems) -> int:
    """0 or absent means "not set": the URL's port, else the protocol's default."""
    value = dest.get("port") if dest else None
    note = " (0 or absent: the URL's port, or the protocol's default)"
    port = integer(value, "destination.port", 0, 65535, bad, E.InvalidPort, note) \
        if value is not None else 0
    if port:
        return port
    if address is not None and address.port:
        return address.port
    default = DEFAULT_PORTS.get(address.protocol if address and address.is_url else protocol, 0)
    # Asked only of a good address: one wrong address is one problem, not two.
    if not default and protocol == "Tcp" and address is not None and port is not None:
        bad.add("destination.port", "is required for a Tcp check: give 1-65535 (0 means "
                "not set)", E.InvalidPort)
    return default


def _source(source: dict[str, Any], bad: Problems) -> tuple[Optional[int], str]:
    given = fields(source, ("port", "resourceId"), "source", bad, E.InvalidSettings)
    port = integer(given["port"], "source.port", 0, 65535, bad, E.InvalidPort) \
        if "port" in given else None
    rid = resource_id(given["resourceId"], "source.resourceId", bad, E.InvalidSettings) \
        if "resourceId" in given else ""
    return port, rid
