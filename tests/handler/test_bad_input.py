"""Every bad input ends in a terminal error status with its own code and a clear message."""
from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Callable, NamedTuple

import pytest

from devtools.fakeagent import FakeAgent

SECRET_SIG = "BadInputSecretSig0123456789"


class Case(NamedTuple):
    setup: Callable[[FakeAgent, Path], int]  # writes the bad input, returns the seq to enable
    code: int
    says: str  # a fragment the message must contain


def _settings(ext_dir: Path, seq: int, text: str) -> int:
    (ext_dir / "config" / f"{seq}.settings").write_text(text)
    return seq


def _no_settings(ext_dir: Path, seq: int) -> int:
    for path in (ext_dir / "config").glob("*.settings"):
        path.unlink()
    return seq


def _handler_settings(ext_dir: Path, seq: int, handler_settings: dict) -> int:
    return _settings(ext_dir, seq, json.dumps(
        {"runtimeSettings": [{"handlerSettings": handler_settings}]}))


def _protected(agent: FakeAgent, ext_dir: Path, seq: int, b64: str, thumbprint=None) -> int:
    return _handler_settings(ext_dir, seq, {
        "publicSettings": {"commandToExecute": "connectivityCheck"},
        "protectedSettings": b64,
        "protectedSettingsCertThumbprint": thumbprint or agent.certificate.thumbprint})


def _raw_cms(agent: FakeAgent, extra: list, plaintext: bytes) -> bytes:
    import subprocess
    return subprocess.run(["openssl", "cms", "-encrypt", "-binary", *extra, "-outform", "DER",
                           str(agent.certificate.crt)], input=plaintext, check=True,
                          capture_output=True, timeout=30).stdout


def _good_b64(agent: FakeAgent) -> str:
    return agent.certificate.encrypt({"statusBlobUri": f"http://x/y/z?sig={SECRET_SIG}"})


CASES = {
    "missing settings file": Case(lambda a, d: _no_settings(d, 7), 12, "no *.settings file"),
    "empty settings file": Case(lambda a, d: _settings(d, 3, ""), 12, "is empty"),
    "invalid JSON": Case(lambda a, d: _settings(d, 3, "{runtimeSettings: ["), 11,
                         "not valid JSON"),
    "runtimeSettings missing": Case(lambda a, d: _settings(d, 3, "{}"), 12, "runtimeSettings"),
    "runtimeSettings empty": Case(lambda a, d: _settings(d, 3, '{"runtimeSettings": []}'), 12,
                                  "runtimeSettings"),
    "thumbprint with no certificate": Case(
        lambda a, d: _protected(a, d, 3, _good_b64(a), "AB" * 20), 20, "no certificate"),
    "corrupt base64": Case(lambda a, d: _protected(a, d, 3, "!!not*base64!!"), 22, "base64"),
    "truncated envelope": Case(lambda a, d: _protected(a, d, 3, base64.b64encode(
        base64.b64decode(_good_b64(a))[:-40]).decode()), 23, "envelope"),
    "unsupported cipher": Case(lambda a, d: _protected(a, d, 3, base64.b64encode(_raw_cms(
        a, ["-camellia128"], b'{"a": 1}')).decode()), 24, "not supported"),
    "protected settings not a JSON object": Case(lambda a, d: _protected(a, d, 3, base64.b64encode(
        _raw_cms(a, ["-aes256"], b'[1, 2, 3]')).decode()), 25, "JSON object"),
    "protected settings not JSON": Case(lambda a, d: _protected(a, d, 3, base64.b64encode(
        _raw_cms(a, ["-des3"], b'\x00\x01 not json')).decode()), 25, "not JSON"),
    "unknown commandToExecute": Case(lambda a, d: _handler_settings(d, 3, {
        "publicSettings": {"commandToExecute": "formatDisk"}}), 30, "formatDisk"),
    "commandToExecute missing": Case(lambda a, d: _handler_settings(d, 3, {
        "publicSettings": {"foo": 1}}), 13, "commandToExecute"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_gives_a_coded_terminal_error(agent, ext_dir, name):
    case = CASES[name]
    seq = case.setup(agent, ext_dir)
    result = agent.run(ext_dir, "enable", seq)
    assert result.returncode != 0, f"{name}: enable exited 0 on bad input: {result.output}"
    assert "Traceback" not in result.output, f"{name}: traceback reached the agent"
    status = agent.status(ext_dir, seq) or agent.status(ext_dir, 0)
    assert status is not None, f"{name}: no status file written"
    assert status["status"] == "error", f"{name}: status {status['status']}"
    assert status["code"] == case.code, f"{name}: code {status['code']}, want {case.code}"
    message = status["formattedMessage"]["message"]
    assert case.says in message, f"{name}: message {message!r} lacks {case.says!r}"
    assert SECRET_SIG not in message + result.output, f"{name}: SAS signature leaked"
    assert "Traceback" not in message


def test_missing_handler_environment_fails_clearly(agent, ext_dir):
    (ext_dir / "HandlerEnvironment.json").unlink()
    result = agent.run(ext_dir, "enable", 0)
    assert result.returncode != 0 and "[10]" in result.output, result.output
    assert "HandlerEnvironment.json is missing" in result.output
    assert "Traceback" not in result.output


def test_malformed_handler_environment_fails_clearly(agent, ext_dir):
    (ext_dir / "HandlerEnvironment.json").write_text('[{"handlerEnvironment": {"logFolder": 3}}]')
    result = agent.run(ext_dir, "enable", 0)
    assert result.returncode != 0 and "[10]" in result.output, result.output
    assert "lacks" in result.output and "Traceback" not in result.output


@pytest.mark.root
def test_unwritable_status_folder_fails_clearly(agent, ext_dir, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the status folder should be")
    environment = json.loads((ext_dir / "HandlerEnvironment.json").read_text())
    environment[0]["handlerEnvironment"]["statusFolder"] = str(blocker / "status")
    (ext_dir / "HandlerEnvironment.json").write_text(json.dumps(environment))
    result = agent.run(ext_dir, "enable", 0)
    assert result.returncode != 0, result.output
    assert "[40]" in result.output and "status" in result.output, result.output
    assert "Traceback" not in result.output
