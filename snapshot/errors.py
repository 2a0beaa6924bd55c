"""Error classes of the VMSnapshot capability, each carrying its spec code and user message."""
from __future__ import annotations

from collections.abc import Iterable

from plumbing.errors import CodedError


class Code:
    """The backup service's numbers, exactly the original extension's (spec "Error codes").

    The service maps each number to the error users see, so no failure may use a number of
    its own: every row of the spec is here, including those only the host path or the
    original's plugin host can produce (marked "not produced"), so nobody invents one.
    """

    SUCCESS_APP_CONSISTENT = 0
    SUCCESS = 1
    ERROR = 2
    ALREADY_PROCESSED = 3
    TRANSITIONING = 4
    PARAMETER_ERROR = 11
    ERROR_12 = 12  # not produced
    WRONG_TIME = 13  # not produced
    SAME_TASK_ID = 14  # not produced: an already processed task is 3
    HTTP_FAILURE = 15
    CERTIFICATE_NOT_FOUND = 16  # the handler decrypts, not this package
    BAD_LUN_LIST = 17
    NO_NETWORK = 76
    SNAPSHOT_COUNT_LIMIT = 85
    FREEZE_FAILED = 121
    FREEZE_TIMEOUT = 122
    CANNOT_OPEN_MOUNT = 123
    FREEZE_HELPER_NOT_FOUND = 124  # not produced: no freeze binary
    THROTTLED = 173
    PRE_SCRIPT_FAILED = 300
    POST_SCRIPT_FAILED = 301
    PRE_SCRIPT_NOT_FOUND = 302
    POST_SCRIPT_NOT_FOUND = 303
    PLUGIN_HOST_CONFIG_PARSE = 304  # not produced: no plugin host
    PLUGIN_CONFIG_PARSE = 305
    PRE_SCRIPT_PERMISSION = 306
    POST_SCRIPT_PERMISSION = 307
    PRE_SCRIPT_TIMEOUT = 308
    POST_SCRIPT_TIMEOUT = 309
    PLUGIN_HOST_PRE_TIMEOUT = 310  # not produced
    PLUGIN_HOST_POST_TIMEOUT = 311  # not produced
    CHECKSUM_MISMATCH = 312  # not produced
    PLUGIN_HOST_CONFIG_NOT_FOUND = 313  # not produced
    PLUGIN_HOST_CONFIG_PERMISSION = 314  # not produced
    PLUGIN_HOST_CONFIG_OWNERSHIP = 315  # not produced
    PLUGIN_CONFIG_NOT_FOUND = 316
    PLUGIN_CONFIG_PERMISSION = 317
    PLUGIN_CONFIG_OWNERSHIP = 318
    TOO_LATE = 402
    WORKLOAD_PRE_ERROR = 500
    WORKLOAD_CONF_PARSE = 501
    WORKLOAD_INVALID_ROLE = 502
    WORKLOAD_INVALID_NAME = 503
    WORKLOAD_POST_ERROR = 504
    WORKLOAD_AUTH_MISSING = 505
    WORKLOAD_CONNECTION_ERROR = 506
    WORKLOAD_IPC_DIR_MISSING = 507  # not produced: Oracle only
    WORKLOAD_DB_STATUS_CHANGED = 508  # not produced: Oracle only
    WORKLOAD_QUIESCE_ERROR = 509
    WORKLOAD_QUIESCE_TIMEOUT = 510
    WORKLOAD_NO_ARCHIVE_LOG = 511  # not produced: Oracle only
    WORKLOAD_LOG_MODE_CHANGED = 512  # not produced: Oracle only
    HOST_SNAPSHOT_REMOTE_ERROR = 556  # not produced: host path only


def all_codes() -> dict[str, int]:
    """Every name → number of the table (tests check it against the spec)."""
    return {k: v for k, v in vars(Code).items() if k.isupper() and isinstance(v, int)}


class SnapshotError(CodedError):
    """Base class: a failure with a spec code and a message fit for the status blob."""

    code = Code.ERROR
    title = "VMSnapshotFailed"


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
    """VMSnapshotScriptPluginConfig.json is missing, malformed, wrongly owned or too open."""

    code = Code.PLUGIN_CONFIG_PARSE


class ScriptError(SnapshotError):
    """A pre- or post-script is missing, refused, failed or timed out."""

    code = Code.PRE_SCRIPT_FAILED
    runs = 0  # attempts the failing script made before this was raised (0: none ran)


class WorkloadConfigError(SnapshotError):
    """workload.conf is malformed, names an unsupported workload or gives no credentials."""

    code = Code.WORKLOAD_CONF_PARSE


class DiskSelectionError(SnapshotError):
    """includedDisks does not match the disk blobs (code 17)."""

    code = Code.BAD_LUN_LIST


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
