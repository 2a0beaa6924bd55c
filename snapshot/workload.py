"""workload.conf ([workload]): which database to quiesce around the freeze, and how."""
from __future__ import annotations

import configparser
import os
from dataclasses import dataclass, field
from typing import Optional

from plumbing.redact import Redactor
from snapshot.errors import Code, WorkloadConfigError
from snapshot.securepath import UntrustedPath, trusted_root_file

WORKLOADS = ("mysql", "mariadb", "postgres", "oracle")
SUPPORTED = ("postgres",)
ROLES = ("master", "slave")
DEFAULT_TIMEOUT = 90.0
# libpq conninfo keys credString may use, and the environment variable psql reads for each.
CRED_ENV = {"host": "PGHOST", "hostaddr": "PGHOSTADDR", "port": "PGPORT", "user": "PGUSER",
            "password": "PGPASSWORD", "dbname": "PGDATABASE", "sslmode": "PGSSLMODE"}
CRED_KEYS = tuple(CRED_ENV)
PUBLIC_KEYS = ("host", "hostaddr", "port", "user", "dbname", "sslmode")  # not secrets


@dataclass(frozen=True)
class WorkloadConfig:
    """A parsed workload.conf; `cred_string` is a secret and never logged."""

    name: str
    command_path: str = ""
    linux_user: str = ""
    cred_string: str = field(default="", repr=False)
    timeout: float = DEFAULT_TIMEOUT
    role: str = "master"


def load_workload_config(path: str, redactor: Redactor) -> Optional[WorkloadConfig]:
    """None when the file is absent. Codes: 503 workload_name not a known workload, 502 bad
    role, 505 neither credString nor linux_user, 501 anything else malformed.

    credString is registered with `redactor` before anything can report on it, and no
    message ever quotes a piece of it, whatever shape it has.
    """
    if not os.path.lexists(path):
        return None
    try:  # it names the binary we run as root and holds a password: only root may write it
        real = trusted_root_file(path).path
    except UntrustedPath as exc:
        raise WorkloadConfigError(f"workload.conf refused: {exc.message}") from None
    section = _read_section(real, path)
    cred = section.get("credString", "").strip()
    _register(redactor, cred)
    name = section.get("workload_name", "").strip().lower()
    if name not in WORKLOADS:
        raise WorkloadConfigError(f"{path}: workload_name must be one of {', '.join(WORKLOADS)}",
                                  Code.WORKLOAD_INVALID_NAME)
    role = section.get("role", "master").strip().lower() or "master"
    if role not in ROLES:
        raise WorkloadConfigError(f"{path}: role must be master or slave",
                                  Code.WORKLOAD_INVALID_ROLE)
    linux_user = section.get("linux_user", "").strip()
    if not cred and not linux_user:
        raise WorkloadConfigError(f"{path}: authorization missing: set credString or linux_user",
                                  Code.WORKLOAD_AUTH_MISSING)
    problems = _problems(section, cred)
    if problems:
        raise WorkloadConfigError(f"{path} [workload]: " + "; ".join(problems))
    return WorkloadConfig(name, section.get("command_path", "").strip(), linux_user, cred,
                          float(section.get("timeout", DEFAULT_TIMEOUT) or DEFAULT_TIMEOUT),
                          role)


def _read_section(real: str, path: str) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    try:
        with open(real, encoding="utf-8") as stream:
            parser.read_file(stream, path)
    except configparser.Error as exc:
        # Its own text quotes the offending line, which may hold the password.
        line = getattr(exc, "lineno", None)
        where = f" at line {line}" if line else ""
        raise WorkloadConfigError(f"{path} is not a valid INI file ({type(exc).__name__}"
                                  f"{where})") from None
    except (UnicodeDecodeError, OSError) as exc:
        raise WorkloadConfigError(f"{path} cannot be read as UTF-8 text "
                                  f"({type(exc).__name__})") from None
    if not parser.has_section("workload"):
        raise WorkloadConfigError(f"{path} has no [workload] section")
    return parser["workload"]


def _problems(section: configparser.SectionProxy, cred: str) -> list[str]:
    problems = []
    command_path = section.get("command_path", "").strip()
    if command_path and not os.path.isabs(command_path):
        problems.append("command_path must be an absolute path")
    try:
        timeout = float(section.get("timeout", DEFAULT_TIMEOUT) or DEFAULT_TIMEOUT)
        if not 0 < timeout <= 3600:
            raise ValueError
    except ValueError:
        problems.append("timeout must be a number of seconds in (0, 3600]")
    try:
        pairs = parse_conninfo(cred)
    except ValueError as exc:
        return problems + [f"credString is not a libpq connection string: {exc}"]
    problems += [f"credString item {i + 1} has a key that is not one of {', '.join(CRED_KEYS)}"
                 for i, (key, _value) in enumerate(pairs) if key.lower() not in CRED_ENV]
    return problems


def _register(redactor: Redactor, cred: str) -> None:
    """The whole value and every value that may be secret: those of a parsed string but the
    connection coordinates (host, port, user...), or, when it does not parse, every piece."""
    secrets = [cred]
    try:
        for key, value in parse_conninfo(cred):
            secrets += [value] if key.lower() not in PUBLIC_KEYS else []
            secrets += [key] if key.lower() not in CRED_ENV else []  # a mistyped secret?
    except ValueError:
        for token in cred.split():
            key, equals, value = token.partition("=")
            if not (equals and key.lower() in PUBLIC_KEYS):
                secrets += [token, key, value]
    redactor.add(*(s.strip("'\"") for s in secrets if s.strip("'\"").lower() not in CRED_ENV))


def parse_conninfo(cred: str) -> list[tuple[str, str]]:
    """libpq `key = value` pairs: spaces around '=' allowed; values unquoted (backslash
    escapes) or single-quoted (\\' and \\\\); keys as written. ValueError says where,
    never what."""
    pairs: list[tuple[str, str]] = []
    pos, end = 0, len(cred)
    while True:
        while pos < end and cred[pos].isspace():
            pos += 1
        if pos >= end:
            return pairs
        start = pos
        while pos < end and not cred[pos].isspace() and cred[pos] != "=":
            pos += 1
        key = cred[start:pos]
        while pos < end and cred[pos].isspace():
            pos += 1
        if not key or pos >= end or cred[pos] != "=":
            raise ValueError(f"item {len(pairs) + 1} is not key=value")
        pos += 1
        while pos < end and cred[pos].isspace():
            pos += 1
        value, pos = _conninfo_value(cred, pos, len(pairs) + 1)
        pairs.append((key, value))


def _conninfo_value(cred: str, pos: int, item: int) -> tuple[str, int]:
    quoted = pos < len(cred) and cred[pos] == "'"
    pos += 1 if quoted else 0
    chars = []
    while pos < len(cred):
        char = cred[pos]
        if char == "\\" and pos + 1 < len(cred):
            chars.append(cred[pos + 1])
            pos += 2
            continue
        if (quoted and char == "'") or (not quoted and char.isspace()):
            return "".join(chars), pos + (1 if quoted else 0)
        chars.append(char)
        pos += 1
    if quoted:
        raise ValueError(f"item {item} has an unterminated quote")
    if not chars:
        raise ValueError(f"item {item} has no value")
    return "".join(chars), pos


def credential_env(config: WorkloadConfig) -> dict[str, str]:
    """credString as PG* environment variables: never on a command line, never logged."""
    return {CRED_ENV[k.lower()]: v for k, v in parse_conninfo(config.cred_string)
            if k.lower() in CRED_ENV}


def unsupported(config: WorkloadConfig) -> WorkloadConfigError:
    return WorkloadConfigError(f"workload hooks for {config.name} are not available in this "
                               f"version (only {', '.join(SUPPORTED)}); remove workload.conf or "
                               "use pre/post scripts", Code.WORKLOAD_INVALID_NAME)
