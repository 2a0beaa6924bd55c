"""Coded errors of the connectivity check: bad settings and run-time outcomes."""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from plumbing.errors import CodedError

if TYPE_CHECKING:
    from connectivity.dns import Resolution

# Result codes (ConnectivityResult.status_code) for a check that ran.
REACHABLE = 0
DEGRADED = 1
UNREACHABLE = 20


class ConnectivityError(CodedError):
    """Base: every error carries an int code and a user message without secrets."""

    code = 29
    title = "ConnectivityCheckFailed"


# Settings problems: one code per kind; ConnectivityRequestError carries all of them at once.
class InvalidSettings(ConnectivityError):
    code = 10
    title = "InvalidSettings"


class InvalidDestination(ConnectivityError):
    code = 11
    title = "InvalidDestination"


class InvalidPort(ConnectivityError):
    code = 12
    title = "InvalidPort"


class InvalidProtocol(ConnectivityError):
    code = 13
    title = "InvalidProtocol"


class InvalidProbeCount(ConnectivityError):
    code = 14
    title = "InvalidProbeCount"


class HttpConfigurationNotAllowed(ConnectivityError):
    code = 15
    title = "HttpConfigurationNotAllowed"


class InvalidHttpConfiguration(ConnectivityError):
    code = 16
    title = "InvalidHttpConfiguration"


class InvalidIPVersion(ConnectivityError):
    code = 17
    title = "InvalidIPVersion"


class ResourceIdWithoutAddress(ConnectivityError):
    """destination.resourceId alone: the guest cannot ask Azure Resource Manager for its IP."""

    code = 18
    title = "ResourceIdWithoutAddress"


# Bad input that only the VM can discover at run time; run_check turns them into result codes.
class DestinationUnresolvable(ConnectivityError):
    code = 21
    title = "DestinationUnresolvable"

    def __init__(self, message: str, resolution: Resolution) -> None:
        super().__init__(message)
        self.resolution = resolution  # the dns.Resolution with every server's answer


class IPv6Unavailable(ConnectivityError):
    code = 22
    title = "IPv6Unavailable"


Problem = tuple[str, str]


class ConnectivityRequestError(ConnectivityError):
    """Every shape problem of a connectivityCheck object, reported together."""

    def __init__(self, problems: Sequence[tuple[str, str, int]]) -> None:
        self.problems: list[Problem] = [(path, msg) for path, msg, _ in problems]
        self.codes: list[int] = [code for _, _, code in problems]
        # One kind of problem keeps its specific code; a mixture is "invalid settings".
        self.code = self.codes[0] if len(set(self.codes)) == 1 else InvalidSettings.code
        fields = ", ".join(path for path, _ in self.problems)
        detail = "; ".join(f"{path}: {msg}" for path, msg in self.problems)
        super().__init__(f"invalid connectivityCheck settings ({fields}): {detail}")


ALL_CODES = {
    cls.title: cls.code
    for cls in (InvalidSettings, InvalidDestination, InvalidPort, InvalidProtocol,
                InvalidProbeCount, HttpConfigurationNotAllowed, InvalidHttpConfiguration,
                InvalidIPVersion, ResourceIdWithoutAddress, DestinationUnresolvable,
                IPv6Unavailable, ConnectivityError)
}
