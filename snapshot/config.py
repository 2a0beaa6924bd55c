"""Local configuration: vmbackup.conf [SnapshotThread] and the paths of the other config files."""
from __future__ import annotations

import configparser
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Optional

from snapshot.errors import LocalConfigError

DEFAULT_CONF = "/etc/azure/vmbackup.conf"
DEFAULT_PLUGIN_CONFIG = "/etc/azure/VMSnapshotScriptPluginConfig.json"
DEFAULT_WORKLOAD_CONF = "/etc/azure/workload.conf"
# Defaults and limits declared once (docs/vmsnapshot.md's table is checked against them).
DEFAULT_FREEZE_TIMEOUT = 60.0
MAX_FREEZE_TIMEOUT = 600.0
DEFAULT_SNAPSHOT_TIMEOUT = 30.0  # per blob request
MAX_SNAPSHOT_TIMEOUT = 600.0
DEFAULT_SNAPSHOT_PARALLELISM = 4
MAX_SNAPSHOT_PARALLELISM = 64


@dataclass(frozen=True)
class SnapshotLocalConfig:
    """What this VM's own configuration says about freezing and where the other files are."""

    conf_path: str = DEFAULT_CONF
    plugin_config_path: str = DEFAULT_PLUGIN_CONFIG
    workload_conf_path: str = DEFAULT_WORKLOAD_CONF
    fsfreeze: bool = True
    freeze_timeout: float = DEFAULT_FREEZE_TIMEOUT
    mounts_to_skip: tuple[str, ...] = ()
    mounts_to_freeze: Optional[tuple[str, ...]] = None  # None: every eligible mount
    snapshot_timeout: float = DEFAULT_SNAPSHOT_TIMEOUT
    snapshot_parallelism: int = DEFAULT_SNAPSHOT_PARALLELISM
    watchdog_report_path: Optional[str] = None  # where the watchdog records a forced thaw


def load_local_config(env: Mapping[str, str] = os.environ) -> SnapshotLocalConfig:
    """Read vmbackup.conf (path from VMSNAPSHOT_CONF); a missing file means defaults."""
    conf_path = env.get("VMSNAPSHOT_CONF") or DEFAULT_CONF
    base = SnapshotLocalConfig(
        conf_path=conf_path,
        plugin_config_path=env.get("VMSNAPSHOT_PLUGIN_CONFIG") or DEFAULT_PLUGIN_CONFIG,
        workload_conf_path=env.get("VMSNAPSHOT_WORKLOAD_CONF") or DEFAULT_WORKLOAD_CONF)
    if not os.path.exists(conf_path):
        return base
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(conf_path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError) as exc:
        raise LocalConfigError(f"{conf_path} is not a valid INI file: "
                               f"{str(exc).splitlines()[0]}") from None
    if not parser.has_section("SnapshotThread"):
        return base
    return _apply(base, parser["SnapshotThread"], conf_path)


def _apply(base: SnapshotLocalConfig, section: configparser.SectionProxy,
           path: str) -> SnapshotLocalConfig:
    problems = []
    values = dict(base.__dict__)
    if "fsfreeze" in section:
        raw = section["fsfreeze"].strip().lower()
        if raw not in ("true", "false"):
            problems.append(f"fsfreeze {raw!r} is not True or False")
        values["fsfreeze"] = raw == "true"
    for key, attr, upper in (("timeout", "freeze_timeout", MAX_FREEZE_TIMEOUT),
                             ("SnapshotTimeout", "snapshot_timeout", MAX_SNAPSHOT_TIMEOUT),
                             ("SnapshotParallelism", "snapshot_parallelism",
                              MAX_SNAPSHOT_PARALLELISM)):
        if key in section:
            try:
                number = float(section[key])
                if not 0 < number <= upper:
                    raise ValueError
                values[attr] = int(number) if attr == "snapshot_parallelism" else number
            except ValueError:
                problems.append(f"{key} {section[key]!r} is not a number in (0, {upper:g}]")
    values["mounts_to_skip"] = _mount_list(section.get("MountsToSkip", ""))
    if section.get("MountsToFreeze", "").strip():
        values["mounts_to_freeze"] = _mount_list(section["MountsToFreeze"])
    if section.get("WatchdogReport", "").strip():
        values["watchdog_report_path"] = section["WatchdogReport"].strip()
    if problems:
        raise LocalConfigError(f"{path} [SnapshotThread]: " + "; ".join(problems))
    return SnapshotLocalConfig(**values)


def _mount_list(raw: str) -> tuple[str, ...]:
    return tuple(os.path.normpath(p.strip()) for p in raw.split(",") if p.strip())
