"""HandlerEnvironment.json and the paths derived from it and from the agent's variables."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional

from handler.errors import HandlerEnvironmentError

# Tests (and odd agent layouts) may point LibDir elsewhere; by default it is the parent of the
# extension folder, where the agent keeps <THUMBPRINT>.crt/.prv.
LIB_DIR_VARIABLE = "HANDLER_LIB_DIR"


@dataclass(frozen=True)
class HandlerEnvironment:
    """Where the agent wants our logs, config, status, heartbeat and events."""

    name: str
    extension_dir: Path
    lib_dir: Path
    log_folder: Path
    config_folder: Path
    status_folder: Path
    heartbeat_file: Optional[Path]
    events_folder: Optional[Path]

    @property
    def state_dir(self) -> Path:
        """Our own bookkeeping: locks, operation and worker records (never secrets)."""
        return self.extension_dir / "state"

    @property
    def mrseq_file(self) -> Path:
        # The agent copies <ext>/mrseq to the new version's folder on update.
        return self.extension_dir / "mrseq"


def extension_dir_from(environ: Mapping[str, str]) -> Path:
    explicit = environ.get("AZURE_GUEST_AGENT_EXTENSION_PATH")
    if explicit and Path(explicit, "HandlerEnvironment.json").is_file():
        return Path(explicit).resolve()
    return Path(__file__).resolve().parent.parent


def load_environment(environ: Mapping[str, str] = os.environ,
                     extension_dir: Optional[Path] = None) -> HandlerEnvironment:
    ext_dir = extension_dir or extension_dir_from(environ)
    path = ext_dir / "HandlerEnvironment.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HandlerEnvironmentError(f"{path} is missing") from None
    except (OSError, ValueError) as exc:
        raise HandlerEnvironmentError(f"{path} is not valid JSON: {exc}") from None
    entry = raw[0] if isinstance(raw, list) and raw else raw
    handler_env = entry.get("handlerEnvironment") if isinstance(entry, dict) else None
    if not isinstance(handler_env, dict):
        raise HandlerEnvironmentError(f"{path}: expected [{{\"handlerEnvironment\": {{...}}}}]")
    missing = [k for k in ("logFolder", "configFolder", "statusFolder")
               if not isinstance(handler_env.get(k), str) or not handler_env.get(k)]
    if missing:
        raise HandlerEnvironmentError(f"{path}: handlerEnvironment lacks {', '.join(missing)}")

    def optional(key: str) -> Optional[Path]:
        value = handler_env.get(key)
        return Path(value) if isinstance(value, str) and value else None

    lib_dir = environ.get(LIB_DIR_VARIABLE)
    return HandlerEnvironment(
        name=str(entry.get("name", "")),
        extension_dir=ext_dir,
        lib_dir=Path(lib_dir) if lib_dir else ext_dir.parent,
        log_folder=Path(handler_env["logFolder"]),
        config_folder=Path(handler_env["configFolder"]),
        status_folder=Path(handler_env["statusFolder"]),
        heartbeat_file=optional("heartbeatFile"),
        events_folder=optional("eventsFolder"),
    )
