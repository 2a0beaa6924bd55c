"""Settings parsed once, at the edge: decrypted, validated, typed; every problem reported."""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Generic, Iterable, Mapping, NamedTuple, Optional, TypeVar

from handler.environment import HandlerEnvironment
from handler.errors import Problem, SettingsValidationError, UnknownCommandError
from handler.protected import decrypt_protected_settings
from handler.settings_file import RawSettings
from plumbing.blobstore import BlobError, validate_blob_uri
from plumbing.redact import Redactor

EMPTY: Mapping[str, Any] = MappingProxyType({})
# The operation's own typed request (capture, connectivity check, snapshot).
Request = TypeVar("Request")


@dataclass(frozen=True)
class HandlerSettings(Generic[Request]):
    """One sequence number's settings, decrypted in memory and validated."""

    seq: int
    command: str
    public: Mapping[str, Any]
    protected: Mapping[str, Any]
    status_blob_uri: Optional[str]
    logs_blob_uri: Optional[str]
    request: Request  # what the operation's parse() made of its settings

    def __repr__(self) -> str:  # never print secrets, even by accident
        return f"HandlerSettings(seq={self.seq}, command={self.command!r})"


RequestParser = Callable[[Mapping[str, Any], Mapping[str, Any]], Any]


class BlobUris(NamedTuple):
    """Where status and logs go; None when not given (or not a valid blob URI)."""

    status: Optional[str]
    logs: Optional[str]


def blob_uris(public: Mapping[str, Any], protected: Mapping[str, Any]) -> BlobUris:
    """The valid status/logs blob URIs (protected wins over public), whatever else is wrong."""
    found, _ = _blob_uris(public, protected)
    return BlobUris(found["statusBlobUri"], found["logsBlobUri"])


def _blob_uris(public: Mapping[str, Any], protected: Mapping[str, Any]
               ) -> tuple[dict[str, Optional[str]], list[Problem]]:
    found: dict[str, Optional[str]] = {}
    problems: list[Problem] = []
    for key in ("statusBlobUri", "logsBlobUri"):
        value = protected.get(key, public.get(key))  # protected wins
        where = "protectedSettings" if key in protected else "publicSettings"
        found[key] = None
        if value in (None, ""):
            continue
        try:
            found[key] = validate_blob_uri(value)
        except BlobError as exc:
            problems.append((f"{where}.{key}", str(exc)))
    return found, problems


def field(settings: Mapping[str, Any], name: str) -> Any:
    """`settings[name]` with the name matched in any case, as ARM matches property names."""
    if name in settings:
        return settings[name]
    wanted = name.lower()
    return next((v for k, v in settings.items() if isinstance(k, str) and k.lower() == wanted),
                None)


def decrypt(raw: RawSettings, env: HandlerEnvironment, redactor: Redactor) -> Mapping[str, Any]:
    if not raw.protected_b64:
        return EMPTY
    protected = decrypt_protected_settings(raw.protected_b64, raw.thumbprint or "", env.lib_dir)
    redactor.add_values(protected)  # before anything can log a piece of it
    return MappingProxyType(protected)


def _command_name(value: Any, names: Iterable[str]) -> Any:
    """The operation a command names, in any case and with spaces around, as the original
    extensions accept it ("Snapshot"); anything else is returned as given."""
    if not isinstance(value, str):
        return value
    wanted = value.strip().lower()
    return next((name for name in names if name.lower() == wanted), value)


def command_of(public: Mapping[str, Any], names: Iterable[str]) -> Any:
    """commandToExecute as the operation table names it (see _command_name)."""
    return _command_name(public.get("commandToExecute"), names)


def parse_settings(raw: RawSettings, protected: Mapping[str, Any],
                   parsers: Mapping[str, RequestParser]) -> HandlerSettings[Any]:
    """Shape first, then the operation's own rules; all problems raised together."""
    public = raw.public or {}
    problems: list[Problem] = []
    command = _command_name(public.get("commandToExecute"), parsers)
    if not isinstance(command, str) or not command.strip():
        problems.append(("publicSettings.commandToExecute", "required, a non-empty string"))
    elif command not in parsers:
        shown = repr(command[:64]) + ("..." if len(command) > 64 else "")
        raise UnknownCommandError(f"publicSettings.commandToExecute: unknown command {shown}; "
                                  f"expected one of {', '.join(sorted(parsers))}")
    uris, uri_problems = _blob_uris(public, protected)
    problems.extend(uri_problems)
    request: Any = None
    if isinstance(command, str) and command in parsers:
        try:
            request = parsers[command](public, protected)
        except SettingsValidationError as exc:
            if not problems:
                raise  # keeps the operation's own code
            problems.extend(exc.problems)
    if problems:
        raise SettingsValidationError(problems)
    return HandlerSettings(raw.seq, command, MappingProxyType(dict(public)), protected,
                           uris["statusBlobUri"], uris["logsBlobUri"], request)
