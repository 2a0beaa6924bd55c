"""Pre/post scripts from VMSnapshotScriptPluginConfig.json: checked, timed, retried, logged."""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from typing import Any, Optional

from plumbing.clock import Clock, SystemClock
from plumbing.proc import CommandError, run
from snapshot.errors import Code, PluginConfigError, ScriptError
from snapshot.fields import FieldError, load_json
from snapshot.log import BufferedLog
from snapshot.securepath import UntrustedPath, resolve_trusted

OUTPUT_CAP = 16 * 1024
CONFIG_CAP = 64 * 1024
_SYSTEM_CLOCK = SystemClock()
DEFAULT_TIMEOUT = 30.0  # timeoutInSeconds: per script, its retries included
MAX_TIMEOUT = 1800
MAX_RETRIES = 10
# (failed, not found, permission, timeout) for each phase: pre even, post odd.
PHASE_CODES = {
    "pre": (Code.PRE_SCRIPT_FAILED, Code.PRE_SCRIPT_NOT_FOUND, Code.PRE_SCRIPT_PERMISSION,
            Code.PRE_SCRIPT_TIMEOUT),
    "post": (Code.POST_SCRIPT_FAILED, Code.POST_SCRIPT_NOT_FOUND, Code.POST_SCRIPT_PERMISSION,
             Code.POST_SCRIPT_TIMEOUT),
}


@dataclass(frozen=True)
class PluginConfig:
    """The script runner's configuration, typed and range-checked."""

    pre_scripts: tuple[str, ...] = ()
    post_scripts: tuple[str, ...] = ()
    pre_params: tuple[str, ...] = ()
    post_params: tuple[str, ...] = ()
    pre_retries: int = 0
    post_retries: int = 0
    timeout: float = DEFAULT_TIMEOUT
    continue_on_failure: bool = True
    fs_freeze_enabled: bool = True


@dataclass(frozen=True)
class PhaseResult:
    """What running one phase's scripts achieved."""

    phase: str
    ok: bool
    code: int = 0
    message: str = ""
    runs: int = 0


def load_plugin_config(path: str) -> Optional[PluginConfig]:
    """The plugin config, None when absent. Refused (PluginConfigError): 316 not a regular
    file (a dangling symlink, a directory), 318 not root's, 317 group/other permission bits or
    a directory on its path others may write, 305 content."""
    if not os.path.lexists(path):
        return None
    try:
        trusted = resolve_trusted(path)
    except UntrustedPath as exc:
        code = (Code.PLUGIN_CONFIG_NOT_FOUND if exc.missing else
                Code.PLUGIN_CONFIG_OWNERSHIP if exc.ownership else Code.PLUGIN_CONFIG_PERMISSION)
        raise PluginConfigError(f"plugin config {path}: {exc.message}", code) from None
    try:
        raw = load_json(_read_root_file(trusted.path, path), f"plugin config {path}",
                        CONFIG_CAP, Code.PLUGIN_CONFIG_PARSE)
    except FieldError as exc:
        raise PluginConfigError(exc.message, exc.code) from None
    if not isinstance(raw, dict):
        raise PluginConfigError(f"plugin config {path} is not a JSON object")
    return _parse_plugin(raw, path)


def _read_root_file(real: str, shown: str) -> str:
    """Read through one descriptor opened without following a symlink, checked by fstat: what
    is checked is what is read."""
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise PluginConfigError(f"plugin config {shown} cannot be opened: {exc.strerror}",
                                Code.PLUGIN_CONFIG_NOT_FOUND) from None
    with os.fdopen(fd, "rb") as stream:
        st = os.fstat(stream.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise PluginConfigError(f"plugin config {shown} is not a regular file",
                                    Code.PLUGIN_CONFIG_NOT_FOUND)
        if st.st_uid != 0:
            raise PluginConfigError(f"plugin config {shown} is owned by uid {st.st_uid}, not "
                                    "root", Code.PLUGIN_CONFIG_OWNERSHIP)
        if st.st_mode & 0o077:
            raise PluginConfigError(f"plugin config {shown} has mode {st.st_mode & 0o777:o}: "
                                    "group/other permissions are not allowed (use 600)",
                                    Code.PLUGIN_CONFIG_PERMISSION)
        data = stream.read(CONFIG_CAP + 1)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise PluginConfigError(f"plugin config {shown} is not UTF-8 text") from None


def _parse_plugin(raw: dict[str, Any], path: str) -> PluginConfig:
    problems: list[str] = []
    values: dict[str, Any] = {}
    for key, attr in (("preScriptLocation", "pre_scripts"), ("postScriptLocation", "post_scripts"),
                      ("preScriptParams", "pre_params"), ("postScriptParams", "post_params")):
        value = raw.get(key, [])
        value = [value] if isinstance(value, str) and value else value
        if value in (None, ""):
            value = []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            problems.append(f"{key} must be a string or a list of strings")
            value = []
        values[attr] = tuple(value)
    for key, number_attr, low, high in (("preScriptNoOfRetries", "pre_retries", 0, MAX_RETRIES),
                                        ("postScriptNoOfRetries", "post_retries", 0,
                                         MAX_RETRIES),
                                        ("timeoutInSeconds", "timeout", 1, MAX_TIMEOUT),
                                        ("ScriptsExecutionPollTimeSeconds", None, 1, 5)):
        value = raw.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                low <= value <= high):
            problems.append(f"{key} must be a number from {low} to {high}")
        elif number_attr:
            values[number_attr] = int(value) if "retries" in number_attr else float(value)
    for key, attr in (("continueBackupOnFailure", "continue_on_failure"),
                      ("fsFreezeEnabled", "fs_freeze_enabled")):
        if key in raw and not isinstance(raw[key], bool):
            problems.append(f"{key} must be true or false")
        elif key in raw:
            values[attr] = raw[key]
    if problems:
        raise PluginConfigError(f"plugin config {path}: " + "; ".join(problems))
    return PluginConfig(**values)


def check_script(script: str, phase: str) -> str:
    """The script's resolved path, or ScriptError: not found (302/303), or permission
    (306/307): not root's, group/other bits, not executable, or on a path others may write."""
    _failed, not_found, permission, _timeout = PHASE_CODES[phase]
    try:
        trusted = resolve_trusted(script)
    except UntrustedPath as exc:
        raise ScriptError(f"{phase}-script {script}: {exc.message}",
                          not_found if exc.missing else permission) from None
    st = trusted.st
    problem = ("is not a regular file" if not stat.S_ISREG(st.st_mode) else
               f"is owned by uid {st.st_uid}, not root" if st.st_uid != 0 else
               f"has mode {st.st_mode & 0o777:o}: group/other permissions are not allowed "
               "(use 700)" if st.st_mode & 0o077 else
               "is not executable by its owner" if not st.st_mode & stat.S_IXUSR else "")
    if problem:
        raise ScriptError(f"{phase}-script {script} {problem}", permission)
    return trusted.path


def check_scripts(config: PluginConfig, phase: str) -> list[str]:
    """Check every script of the phase (nothing runs); their resolved paths, in order."""
    return [check_script(script, phase)
            for script in (config.pre_scripts if phase == "pre" else config.post_scripts)]


def run_phase(config: PluginConfig, phase: str, log: BufferedLog,
              clock: Clock = _SYSTEM_CLOCK) -> PhaseResult:
    """Run every script of the phase (retrying, within its timeout); never raises."""
    runs = 0
    try:
        scripts = check_scripts(config, phase)  # again: what runs is what was just checked
        for script in scripts:
            runs += _run_script(config, phase, script, log, clock)
    except ScriptError as exc:
        log.error(exc.message)
        return PhaseResult(phase, False, exc.code, exc.message, runs + exc.runs)
    return PhaseResult(phase, True, 0, f"{len(scripts)} {phase}-script(s) succeeded", runs)


def _run_script(config: PluginConfig, phase: str, script: str, log: BufferedLog,
                clock: Clock) -> int:
    """Attempts until one succeeds, all are used, or the timeout (which covers them all, on
    `clock`) is spent. Each attempt's own timeout is what is left, enforced by plumbing.proc
    on the real clock: it kills a real process."""
    failed, _nf, _perm, timeout_code = PHASE_CODES[phase]
    params = config.pre_params if phase == "pre" else config.post_params
    attempts = 1 + (config.pre_retries if phase == "pre" else config.post_retries)
    deadline = clock.monotonic() + config.timeout
    last, ran = "", 0
    for attempt in range(1, attempts + 1):
        remaining = deadline - clock.monotonic()
        if remaining <= 0:
            break
        ran = attempt
        try:
            done = run([script, *params], timeout=remaining, check=False, cap=OUTPUT_CAP)
        except CommandError as exc:
            error = ScriptError(f"{phase}-script {script} could not start: {exc}", failed)
            error.runs = attempt
            raise error from None
        log.block(f"{phase}-script {script} attempt {attempt}/{attempts}: "
                  f"exit {done.returncode}{' (timed out, killed)' if done.timed_out else ''}"
                  f"{' (output truncated)' if done.truncated else ''}",
                  (done.stdout + done.stderr).strip())
        if done.returncode == 0 and not done.timed_out:
            return attempt
        last = "timed out" if done.timed_out else f"exited with {done.returncode}"
        if done.timed_out:
            break
    timed_out = last == "timed out" or not last
    error = ScriptError(f"{phase}-script {script} {last or 'timed out'} "
                        f"(timeout {config.timeout:g}s, {attempts} attempt(s) allowed)",
                        timeout_code if timed_out else failed)
    error.runs = ran  # an attempt the timeout left no time for did not run
    raise error


class ScriptHooks:
    """The plugin config's pre- and post-scripts as the run's quiesce/resume hooks."""

    def __init__(self, config: PluginConfig, log: BufferedLog,
                 clock: Clock = _SYSTEM_CLOCK) -> None:
        self.config = config
        self.log = log
        self.clock = clock

    def pre(self) -> PhaseResult:
        return run_phase(self.config, "pre", self.log, self.clock)

    def post(self) -> PhaseResult:
        return run_phase(self.config, "post", self.log, self.clock)
