"""Error classes of the VMSnapshot capability, each carrying its spec code and user message."""
from __future__ import annotations

from collections.abc import Iterable


class Code:
    """Service-visible numeric codes (the original extension's internal numbers)."""

    SUCCESS_APP_CONSISTENT = 0
    SUCCESS = 1
    ERROR = 2
    ALREADY_PROCESSED = 3
    TRANSITIONING = 4
    PARAMETER_ERROR = 11
    NO_SETTINGS = 16
    BAD_LUN_LIST = 17
    NO_NETWORK = 76
    SNAPSHOT_COUNT_LIMIT = 85
    FREEZE_FAILED = 121
    FREEZE_TIMEOUT = 122
    CANNOT_OPEN_MOUNT = 123
    THROTTLED = 173
    PRE_SCRIPT_FAILED = 300
    POST_SCRIPT_FAILED = 301
    PRE_SCRIPT_NOT_FOUND = 302
    POST_SCRIPT_NOT_FOUND = 303
    PLUGIN_CONFIG_NOT_FOUND = 308
    PLUGIN_CONFIG_PERMISSION = 309
    PRE_SCRIPT_PERMISSION = 310
    POST_SCRIPT_PERMISSION = 311
    PRE_SCRIPT_TIMEOUT = 312
    POST_SCRIPT_TIMEOUT = 313
    PLUGIN_CONFIG_PARSE = 314
    TOO_LATE = 402
    WORKLOAD_CONFIG_ERROR = 500
    WORKLOAD_UNSUPPORTED = 501
    WORKLOAD_QUIESCE_FAILED = 502
    WORKLOAD_RESUME_FAILED = 503
    WORKLOAD_TIMEOUT = 504


class SnapshotError(Exception):
    """Base class: a failure with a spec code and a message fit for the status blob."""

    code = Code.ERROR

    def __init__(self, message: str, code: int = -1) -> None:
        super().__init__(message)
        self.message = message
        if code >= 0:
            self.code = code


class SnapshotSettingsError(SnapshotError):
    """Settings are missing or malformed (every problem listed in one message)."""

    code = Code.PARAMETER_ERROR

    def __init__(self, problems: Iterable[str], code: int = Code.PARAMETER_ERROR) -> None:
        self.problems = list(problems)
        super().__init__("invalid snapshot settings: " + "; ".join(self.problems), code)


class TooLateError(SnapshotSettingsError):
    """The command arrived more than the allowed time after its scheduled start."""

    def __init__(self, message: str) -> None:
        super().__init__([message], Code.TOO_LATE)


class LocalConfigError(SnapshotError):
    """vmbackup.conf is malformed."""

    code = Code.PARAMETER_ERROR


class PluginConfigError(SnapshotError):
    """VMSnapshotScriptPluginConfig.json is malformed, wrongly owned or too open."""

    code = Code.PLUGIN_CONFIG_PARSE


class ScriptError(SnapshotError):
    """A pre- or post-script is missing, refused, failed or timed out."""

    code = Code.PRE_SCRIPT_FAILED


class WorkloadConfigError(SnapshotError):
    """workload.conf is malformed or names an unsupported workload."""

    code = Code.WORKLOAD_CONFIG_ERROR


class FreezeError(SnapshotError):
    """Filesystems could not be frozen (or a mount could not be opened)."""

    code = Code.FREEZE_FAILED


class FreezeTimeoutError(FreezeError):
    """The watchdog thawed before the snapshot finished."""

    code = Code.FREEZE_TIMEOUT


class DiskSnapshotError(SnapshotError):
    """A disk blob snapshot failed; the code says throttled, count limit, or generic."""

    code = Code.ERROR


class RestoreError(SnapshotError):
    """Listing or restoring a recovery point failed."""

    code = Code.ERROR
