"""A fake guest agent that drives the packaged handler step for step as WALinuxAgent does."""
from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

from devtools.fabric import TenantCertificate

# The agent's per-command timeouts (seconds); at the deadline the process group is killed.
TIMEOUTS = {"install": 900, "enable": 300, "disable": 900, "update": 900, "uninstall": 300}
STATUS_VALUES = ("transitioning", "warning", "error", "success")
PUBLISHER_TYPE = "Contoso.Diagnostics.VmDiagnosticsLinux"


@dataclass
class CommandRun:
    command: str
    returncode: int
    output: str
    duration: float
    killed: bool


@dataclass
class FakeAgent:
    """One VM's agent state: LibDir, a log root, the installed extension folders."""

    lib_dir: Path
    log_root: Path
    certificate: TenantCertificate
    extra_env: Dict[str, str] = field(default_factory=dict)
    handler_name: str = PUBLISHER_TYPE
    cipher: str = "des3"  # the fabric's default today; FIPS 140-3 VMs get aes256
    runs: List[CommandRun] = field(default_factory=list)

    # -- package ------------------------------------------------------------------------
    def unpack(self, zip_path: Path, version: str) -> Path:
        """Unzip to <LibDir>/<Publisher>.<Type>-<Version>/ and add user-execute bits."""
        ext_dir = self.lib_dir / f"{self.handler_name}-{version}"
        with zipfile.ZipFile(zip_path) as archive:
            archive.extractall(ext_dir)
        for path in ext_dir.rglob("*"):
            if path.is_file():
                path.chmod(path.stat().st_mode | stat.S_IXUSR)
        self.write_handler_environment(ext_dir)
        return ext_dir

    def write_handler_environment(self, ext_dir: Path) -> None:
        log_folder = self.log_root / self.handler_name
        for folder in ("config", "status"):
            (ext_dir / folder).mkdir(mode=0o700, exist_ok=True)
        document = [{"name": self.handler_name, "version": 1.0, "handlerEnvironment": {
            "logFolder": str(log_folder), "configFolder": str(ext_dir / "config"),
            "statusFolder": str(ext_dir / "status"),
            "heartbeatFile": str(ext_dir / "heartbeat.log"),
            "eventsFolder": str(log_folder / "events")}}]
        (ext_dir / "HandlerEnvironment.json").write_text(json.dumps(document))

    # -- settings -----------------------------------------------------------------------
    def write_settings(self, ext_dir: Path, seq: int, public: Optional[Mapping[str, Any]],
                       protected: Optional[Mapping[str, Any]] = None,
                       cipher: Optional[str] = None) -> Path:
        handler_settings: Dict[str, Any] = {"publicSettings": public, "protectedSettings": None,
                                            "protectedSettingsCertThumbprint": None}
        if protected is not None:
            handler_settings["protectedSettings"] = self.certificate.encrypt(
                protected, cipher or self.cipher)
            handler_settings["protectedSettingsCertThumbprint"] = self.certificate.thumbprint
        path = ext_dir / "config" / f"{seq}.settings"
        path.write_text(json.dumps({"runtimeSettings": [{"handlerSettings": handler_settings}]}))
        return path

    def write_empty_settings(self, ext_dir: Path) -> Path:
        path = ext_dir / "config" / "0.settings"
        path.write_bytes(b"")
        return path

    # -- commands -----------------------------------------------------------------------
    def run(self, ext_dir: Path, command: str, seq: int = 0,
            env: Optional[Mapping[str, str]] = None, timeout: Optional[float] = None
            ) -> CommandRun:
        manifest = json.loads((ext_dir / "HandlerManifest.json").read_text())[0]
        line = manifest["handlerManifest"][f"{command}Command"]
        version = ext_dir.name.rsplit("-", 1)[1]
        environ = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
                   "ConfigSequenceNumber": str(seq),
                   "AZURE_GUEST_AGENT_EXTENSION_PATH": str(ext_dir),
                   "AZURE_GUEST_AGENT_EXTENSION_VERSION": version,
                   "AZURE_GUEST_AGENT_WIRE_PROTOCOL_ADDRESS": "127.0.0.1",
                   "AZURE_GUEST_AGENT_EXTENSION_SUPPORTED_FEATURES": json.dumps(
                       [{"Key": "ExtensionTelemetryPipeline", "Value": "1.0"}])}
        if command in ("install", "enable"):
            environ["AZURE_GUEST_AGENT_UNINSTALL_CMD_EXIT_CODE"] = "NOT_RUN"
        environ.update(self.extra_env)
        environ.update(env or {})
        started = time.monotonic()
        child = subprocess.Popen(["sh", "-c", line], cwd=str(ext_dir), env=environ,
                                 stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, start_new_session=True)
        killed = False
        try:
            output, _ = child.communicate(timeout=timeout or TIMEOUTS[command])
        except subprocess.TimeoutExpired:
            killed = True
            os.killpg(child.pid, signal.SIGKILL)
            output, _ = child.communicate()
        result = CommandRun(command, child.returncode, output.decode("utf-8", "replace")[:3200],
                            time.monotonic() - started, killed)
        self.runs.append(result)
        return result

    # -- status -------------------------------------------------------------------------
    def status(self, ext_dir: Path, seq: int) -> Optional[Dict[str, Any]]:
        """Read `<seq>.status` as the agent does, checking what the agent checks."""
        path = ext_dir / "status" / f"{seq}.status"
        if not path.exists():
            return None  # the agent reports a missing file as transitioning
        raw = path.read_bytes()
        assert len(raw) <= 128 * 1024, f"status file is {len(raw)} bytes, over 128 KiB"
        document = json.loads(raw)
        assert isinstance(document, list) and document, "status must be a non-empty array"
        entry = document[0]
        assert entry["version"] == 1.0 and "timestampUTC" in entry, f"bad envelope: {entry}"
        status = entry["status"]
        assert status["status"] in STATUS_VALUES, f"bad status {status['status']!r}"
        assert isinstance(status["code"], int), "code must be an int"
        assert status["formattedMessage"]["lang"] == "en-US"
        for sub in status.get("substatus") or []:
            assert sub["status"] in STATUS_VALUES, f"bad substatus (error 1012): {sub}"
            assert isinstance(sub["code"], int) and "message" in sub["formattedMessage"]
        return status

    def wait_terminal(self, ext_dir: Path, seq: int, timeout: float = 120.0,
                      interval: float = 0.25) -> Dict[str, Any]:
        """Poll the status file (the agent polls every ~6 s) until success or error."""
        deadline = time.monotonic() + timeout
        status = None
        while time.monotonic() < deadline:
            status = self.status(ext_dir, seq)
            if status is not None and status["status"] in ("success", "error"):
                return status
            time.sleep(interval)
        raise AssertionError(f"sequence {seq} not terminal after {timeout}s: {status}")

    # -- lifecycle as the agent runs it -------------------------------------------------
    def fresh_install(self, zip_path: Path, version: str, seq: int = 0) -> Path:
        ext_dir = self.unpack(zip_path, version)
        if not any((ext_dir / "config").glob("*.settings")):
            self.write_empty_settings(ext_dir)
        return ext_dir

    def update(self, old_dir: Path, zip_path: Path, new_version: str, seq: int
               ) -> Dict[str, CommandRun]:
        """Old disable, copy mrseq and status, new update, old uninstall, new install+enable."""
        runs = {"old disable": self.run(old_dir, "disable", seq)}
        new_dir = self.unpack(zip_path, new_version)
        for settings in (old_dir / "config").glob("*.settings"):
            shutil.copy2(settings, new_dir / "config" / settings.name)
        if (old_dir / "mrseq").exists():
            shutil.copy2(old_dir / "mrseq", new_dir / "mrseq")
        for status_file in (old_dir / "status").glob("*"):
            shutil.copy2(status_file, new_dir / "status" / status_file.name)
        old_version = old_dir.name.rsplit("-", 1)[1]
        runs["new update"] = self.run(new_dir, "update", seq, env={
            "VERSION": new_version, "AZURE_GUEST_AGENT_UPDATING_FROM_VERSION": old_version,
            "AZURE_GUEST_AGENT_DISABLE_CMD_EXIT_CODE": str(runs["old disable"].returncode)})
        runs["old uninstall"] = self.run(old_dir, "uninstall", seq)
        shutil.rmtree(old_dir)
        runs["new install"] = self.run(new_dir, "install", seq)
        runs["new enable"] = self.run(new_dir, "enable", seq)
        runs["new_dir"] = new_dir  # type: ignore[assignment]
        return runs

    def remove(self, ext_dir: Path, seq: int) -> Dict[str, CommandRun]:
        runs = {"disable": self.run(ext_dir, "disable", seq),
                "uninstall": self.run(ext_dir, "uninstall", seq)}
        shutil.rmtree(ext_dir)
        return runs
