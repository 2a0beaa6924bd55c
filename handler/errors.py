"""Handler errors: each class carries its status code and a message fit for the user."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional, Tuple

from plumbing.errors import CodedError

Problem = Tuple[str, str]  # (field path, what is wrong)
# A connectivity check's code n (its own table, connectivity/errors.py) is reported as 200 + n.
CONNECTIVITY_CODE_BASE = 200
# Whose table a status code is from: the handler's own (below), or a capability's.
HANDLER, PACKET_CAPTURE, CONNECTIVITY_CHECK, VMSNAPSHOT = (
    "handler", "packetCapture", "connectivityCheck", "VMSnapshot")


@dataclass(frozen=True)
class StatusCode:
    """A status code and the capability whose table defines it. The numbers alone collide
    (121 is packet capture's CaptureFailed and VMSnapshot's FreezeFailed; 11 the handler's
    settings-file error and VMSnapshot's parameter error), so a status carries both."""

    capability: str
    code: int

    def __str__(self) -> str:
        return f"{self.capability} {self.code}"


class HandlerError(CodedError):
    """A failure reported to the agent as a terminal error status."""

    code = 1
    title = "Internal error"

    def __init__(self, message: str, *, code: Optional[int] = None) -> None:
        super().__init__(message, code)


class HandlerEnvironmentError(HandlerError):
    code, title = 10, "HandlerEnvironment.json missing or malformed"


class SettingsFileError(HandlerError):
    code, title = 11, "Settings file malformed"


class NoRuntimeSettingsError(HandlerError):
    code, title = 12, "No runtime settings"


class SettingsValidationError(HandlerError):
    """Every problem found in the settings, reported together with the field names."""

    code, title = 13, "Invalid settings"

    def __init__(self, problems: Iterable[Problem], *, code: Optional[int] = None,
                 prefix: str = "invalid settings") -> None:
        self.problems: list[Problem] = list(problems)
        listed = "; ".join(f"{field}: {what}" for field, what in self.problems)
        super().__init__(f"{prefix}: {listed}", code=code)


class CertificateNotFoundError(HandlerError):
    code, title = 20, "Certificate not found"


class WrongCertificateError(HandlerError):
    code, title = 21, "Protected settings not encrypted to this certificate"


class ProtectedSettingsEncodingError(HandlerError):
    code, title = 22, "Protected settings are not valid base64"


class EnvelopeError(HandlerError):
    code, title = 23, "Protected settings envelope malformed"


class UnsupportedCipherError(HandlerError):
    code, title = 24, "Unsupported content cipher"


class ProtectedSettingsContentError(HandlerError):
    code, title = 25, "Protected settings are not a JSON object"


class UnknownCommandError(HandlerError):
    code, title = 30, "Unknown commandToExecute"


class StatusWriteError(HandlerError):
    code, title = 40, "Status folder not writable"


class StateLockedError(HandlerError):
    code, title = 44, "Handler state locked by another process"


class StateWriteError(HandlerError):
    code, title = 45, "Handler state not writable"


class StatusBlobError(HandlerError):
    """The status blob could not be written; code by cause (41 unreachable, 42, 43)."""

    code, title = 41, "Status blob upload failed"


class StatusBlobForbiddenError(StatusBlobError):
    code, title = 42, "Status blob refused the SAS"


class StatusBlobExpiredError(StatusBlobError):
    code, title = 43, "Status blob SAS expired"


class CaptureStateError(HandlerError):
    """A capture start or delete that conflicts with the session's state (running, stopped)."""

    code, title = 151, "Capture state conflict"


class WorkerDiedError(HandlerError):
    code, title = 50, "Worker process died"


class WorkerStoppedError(HandlerError):
    code, title = 51, "Stopped by disable before it completed"
