"""workload.conf ([workload]): which database to quiesce around the freeze, and how."""
from __future__ import annotations

import configparser
import os
from dataclasses import dataclass, field
from typing import Dict, Optional

from snapshot.errors import Code, WorkloadConfigError

WORKLOADS = ("mysql", "mariadb", "postgres", "oracle")
DEFAULT_TIMEOUT = 90.0


@dataclass(frozen=True)
class WorkloadConfig:
    """A parsed workload.conf; `cred_string` is a secret and never logged."""

    name: str
    command_path: str = ""
    linux_user: str = ""
    cred_string: str = field(default="", repr=False)
    timeout: float = DEFAULT_TIMEOUT


def load_workload_config(path: str) -> Optional[WorkloadConfig]:
    """None when the file is absent; WorkloadConfigError (500) when it is malformed."""
    if not os.path.exists(path):
        return None
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError) as exc:
        raise WorkloadConfigError(f"{path} is not a valid INI file: "
                                  f"{str(exc).splitlines()[0][:200]}") from None
    if not parser.has_section("workload"):
        raise WorkloadConfigError(f"{path} has no [workload] section")
    section = parser["workload"]
    problems = []
    name = section.get("workload_name", "").strip().lower()
    if name not in WORKLOADS:
        problems.append(f"workload_name {name!r} is not one of {', '.join(WORKLOADS)}")
    command_path = section.get("command_path", "").strip()
    if command_path and not os.path.isabs(command_path):
        problems.append("command_path must be an absolute path")
    try:
        timeout = float(section.get("timeout", DEFAULT_TIMEOUT))
        if not 0 < timeout <= 3600:
            raise ValueError
    except ValueError:
        problems.append("timeout must be a number of seconds in (0, 3600]")
        timeout = DEFAULT_TIMEOUT
    cred = section.get("credString", "").strip()
    problems += [f"credString key {key!r} is not supported (use {', '.join(CRED_KEYS)})"
                 for key in _cred_pairs(cred) if key not in CRED_KEYS]
    if problems:
        raise WorkloadConfigError(f"{path} [workload]: " + "; ".join(problems))
    return WorkloadConfig(name, command_path, section.get("linux_user", "").strip(),
                          cred, timeout)


CRED_KEYS = ("host", "port", "user", "password", "dbname", "sslmode")


def _cred_pairs(cred: str) -> Dict[str, str]:
    """credString as libpq-style `key=value` pairs separated by spaces."""
    pairs = {}
    for item in cred.split():
        key, _, value = item.partition("=")
        pairs[key.strip().lower()] = value
    return pairs


def credential_env(config: WorkloadConfig) -> Dict[str, str]:
    """credString as PG* environment variables: never on a command line, never logged."""
    names = {"host": "PGHOST", "port": "PGPORT", "user": "PGUSER", "password": "PGPASSWORD",
             "dbname": "PGDATABASE", "sslmode": "PGSSLMODE"}
    return {names[k]: v for k, v in _cred_pairs(config.cred_string).items() if k in names}


def unsupported(config: WorkloadConfig) -> WorkloadConfigError:
    return WorkloadConfigError(f"workload hooks for {config.name} are not available in this "
                               "version; remove workload.conf or use pre/post scripts",
                               Code.WORKLOAD_UNSUPPORTED)
