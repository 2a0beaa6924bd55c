"""Finds the settings file the agent meant and reads its handlerSettings (still encrypted)."""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

from handler.errors import NoRuntimeSettingsError, SettingsFileError

_SETTINGS_NAME = re.compile(r"^(\d+)\.settings$")


@dataclass(frozen=True)
class RawSettings:
    """One `<seq>.settings` file: public settings parsed, protected still ciphertext."""

    seq: int
    path: Path
    public: Optional[Mapping[str, Any]]
    protected_b64: Optional[str]
    thumbprint: Optional[str]
    digest: str = ""  # sha256 of the file: a worker checks it reads what enable accepted

    @property
    def empty(self) -> bool:
        return self.public is None and self.protected_b64 is None


def choose_sequence(config_folder: Path, environ: Mapping[str, str] = os.environ) -> Optional[int]:
    """ConfigSequenceNumber when its file exists, else the newest *.settings by mtime."""
    requested = environ.get("ConfigSequenceNumber", "").strip()
    if requested.isascii() and requested.isdigit() \
            and (config_folder / f"{int(requested)}.settings").is_file():
        return int(requested)
    candidates = []
    for entry in config_folder.glob("*.settings") if config_folder.is_dir() else ():
        match = _SETTINGS_NAME.match(entry.name)
        if match:
            candidates.append((entry.stat().st_mtime, int(match.group(1))))
    if not candidates:
        return None
    return max(candidates)[1]


def read_settings(config_folder: Path, seq: int) -> RawSettings:
    path = config_folder / f"{seq}.settings"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NoRuntimeSettingsError(f"settings file {path.name} is missing") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsFileError(f"settings file {path.name} is unreadable: {exc}") from None
    if not text.strip():
        if seq == 0:  # the agent's way of saying "no settings": an empty 0.settings
            return RawSettings(seq, path, None, None, None, _digest(text))
        raise NoRuntimeSettingsError(f"settings file {path.name} is empty")
    keys = KeyClashes()
    try:
        document = json.loads(text, object_pairs_hook=keys)
    except ValueError as exc:  # incl. a number of more than 4,300 digits (Python 3.11+)
        raise SettingsFileError(f"settings file {path.name} is not valid JSON: "
                                f"{str(exc)[:200]}") from None
    except RecursionError:
        raise SettingsFileError(f"settings file {path.name} is nested too deeply to be "
                                "settings") from None
    runtime = document.get("runtimeSettings") if isinstance(document, dict) else None
    if not isinstance(runtime, list) or not runtime:
        raise NoRuntimeSettingsError(f"settings file {path.name} has no runtimeSettings")
    handler_settings = runtime[0].get("handlerSettings") if isinstance(runtime[0], dict) else None
    if not isinstance(handler_settings, dict):
        raise SettingsFileError(f"{path.name}: runtimeSettings[0].handlerSettings is not an object")
    public = handler_settings.get("publicSettings")
    protected = handler_settings.get("protectedSettings")
    thumbprint = handler_settings.get("protectedSettingsCertThumbprint")
    problems = [keys.describe()] if keys.found else []
    if public is not None and not isinstance(public, dict):
        problems.append("publicSettings must be an object")
    if protected is not None and not isinstance(protected, str):
        problems.append("protectedSettings must be a base64 string")
    if protected and not isinstance(thumbprint, str):
        problems.append("protectedSettingsCertThumbprint is required with protectedSettings")
    if problems:
        raise SettingsFileError(f"{path.name}: " + "; ".join(problems))
    return RawSettings(seq, path, public, protected or None, thumbprint, _digest(text))


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class KeyClashes:
    """A json object_pairs_hook that notes keys ARM reads as one property (the same name in
    any case, or repeated): which one a caller meant is not ours to guess."""

    def __init__(self) -> None:
        self.found: list[str] = []

    def __call__(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, str] = {}
        for key, _ in pairs:
            folded = key.lower()
            if folded in seen:
                self.found.append(f"{seen[folded][:60]!r} and {key[:60]!r}")
            else:
                seen[folded] = key
        return dict(pairs)

    def describe(self) -> str:
        return (f"keys {'; '.join(self.found[:3])} differ only in case (or repeat): ARM reads "
                "them as one property; keep one")
