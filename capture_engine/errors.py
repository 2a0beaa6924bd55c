"""Coded errors of the capture engine: each class carries its int code and a user message."""
from __future__ import annotations

from typing import Sequence

from plumbing.errors import CodedError
from plumbing.problems import ProblemCollector

# packetCaptureError[] values of the service's querystatus.
INTERNAL_ERROR = "InternalError"
AGENT_STOPPED = "AgentStopped"
CAPTURE_FAILED = "CaptureFailed"
LOCAL_FILE_FAILED = "LocalFileFailed"
STORAGE_FAILED = "StorageFailed"


class CaptureError(CodedError):
    """Base class: `code` is stable, the message is safe to show (no secrets)."""

    code = 1
    title = "CaptureFailed"
    capture_error = INTERNAL_ERROR


class InvalidSettingsError(CaptureError):
    code = 100


class UnknownProtocolError(InvalidSettingsError):
    code = 101


class InvalidAddressError(InvalidSettingsError):
    code = 102


class InvalidPortError(InvalidSettingsError):
    code = 103


class InvalidRangeError(InvalidSettingsError):
    code = 104


class InvalidLimitError(InvalidSettingsError):
    code = 105


class InvalidFilePathError(InvalidSettingsError):
    code = 106


class InvalidStoragePathError(InvalidSettingsError):
    code = 107


class InvalidActionError(InvalidSettingsError):
    code = 108


class InvalidExpressionError(InvalidSettingsError):
    """A raw BPF expression (CLI) that libpcap cannot compile."""

    code = 109


Problem = tuple[str, str]
SHOWN_PROBLEMS = 20  # in the message; `.problems` keeps them all


class CaptureSettingsError(CaptureError):
    """Every problem found in one settings object, reported together.

    `.problems` is a list of (field_path, message); `.codes` the code of each problem;
    `.code` is the code of the first problem.
    """

    def __init__(self, problems: Sequence[Problem], codes: Sequence[int]) -> None:
        self.problems: list[Problem] = list(problems)
        self.codes: list[int] = list(codes)
        self.code = self.codes[0] if self.codes else InvalidSettingsError.code
        names = sorted({field for field, _ in self.problems})
        fields = ", ".join(names[:SHOWN_PROBLEMS]) + (", ..." if len(names) > SHOWN_PROBLEMS
                                                      else "")
        detail = "; ".join(f"{field}: {message}"
                           for field, message in self.problems[:SHOWN_PROBLEMS])
        if len(self.problems) > SHOWN_PROBLEMS:
            detail += f"; and {len(self.problems) - SHOWN_PROBLEMS} more"
        super().__init__(f"invalid packetCapture settings ({fields}): {detail}")


class FilterTooLargeError(InvalidSettingsError):
    """The filters compile to a program the kernel will not attach (net.core.optmem_max)."""

    code = 112


class InterfaceNotFoundError(CaptureError):
    code = 110
    capture_error = CAPTURE_FAILED


class UnsupportedLinkTypeError(CaptureError):
    code = 111
    capture_error = CAPTURE_FAILED


class BackendUnavailableError(CaptureError):
    """The requested backend cannot be used here (libpcap missing, not root...)."""

    code = 120
    capture_error = CAPTURE_FAILED


class CaptureFailedError(CaptureError):
    """Opening or reading a capture source failed at run time."""

    code = 121
    capture_error = CAPTURE_FAILED


class LocalFileError(CaptureError):
    """The capture file could not be created or written (disk full, permissions)."""

    code = 130
    capture_error = LOCAL_FILE_FAILED

    def __init__(self, message: str, disk_full: bool = False) -> None:
        super().__init__(message)
        self.disk_full = disk_full  # no space or quota left: the stop reason is DiskFull


class StorageUploadError(CaptureError):
    code = 140
    capture_error = STORAGE_FAILED


class SasExpiredError(StorageUploadError):
    code = 141


class StorageForbiddenError(StorageUploadError):
    code = 142


class CaptureNotFoundError(CaptureError):
    """stop/delete of a capture that does not exist (or has no local file)."""

    code = 150


ALL_ERRORS = (
    InvalidSettingsError, UnknownProtocolError, InvalidAddressError, InvalidPortError,
    InvalidRangeError, InvalidLimitError, InvalidFilePathError, InvalidStoragePathError,
    InvalidActionError, InvalidExpressionError, FilterTooLargeError, InterfaceNotFoundError,
    UnsupportedLinkTypeError,
    BackendUnavailableError, CaptureFailedError, LocalFileError, StorageUploadError,
    SasExpiredError, StorageForbiddenError, CaptureNotFoundError,
)


class ProblemList:
    """The capture parser's view of the shared collector: a problem is named by its error
    class, whose code it carries."""

    def __init__(self) -> None:
        self.collected = ProblemCollector()

    def add(self, field: str, message: str,
            error: type[CaptureError] = InvalidSettingsError) -> None:
        self.collected.add(field, message, error.code)

    def __bool__(self) -> bool:
        return bool(self.collected)

    def __len__(self) -> int:
        return len(self.collected)

    def raise_if_any(self) -> None:
        found = self.collected.found
        if found:
            raise CaptureSettingsError([(p.path, p.message) for p in found],
                                       [p.code for p in found])


# ---- capparse's classes end here; caprun appends its error classes below this line ----


# -- runtime errors (caprun)
class KernelFilterRefusedError(CaptureFailedError):
    """The kernel would not take the capture filter (e.g. net.core.optmem_max too small): a
    capture must never silently fall back to copying every packet to user space."""

    code = 122


class CaptureFileLostError(LocalFileError):
    """The capture file (or its folder) was removed while the capture was writing it."""

    code = 131


class InputFileError(CaptureError):
    """CLI -r: the file to re-filter is missing, unreadable, not pcap/pcapng, or damaged."""

    code = 132
    capture_error = LOCAL_FILE_FAILED
