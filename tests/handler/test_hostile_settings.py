"""Hostile values in every settings field of every command, through the handler's own parsing
(the shape every caller's settings take) and a sample through the packaged handler: each ends
in a coded error naming the field, within a second, with no secret in the message."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import pytest

from handler.errors import HandlerError, SettingsValidationError
from handler.operations.registry import build_registry
from handler.protected import decrypt_protected_settings
from handler.settings import parse_settings
from handler.settings_file import RawSettings, read_settings
from plumbing.redact import Redactor
from tests.snapshot.conftest import settings_dicts

SECRET = "Zq7SECRETsig"
STATUS_URI = f"https://acct.blob.core.windows.net/status/s.json?sv=2024&sig={SECRET}1"
DEEP = 20_000


def deep(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


HOSTILE: List[Tuple[str, Any]] = [
    ("none", None), ("true", True), ("zero", 0), ("negative", -1), ("float", 0.5),
    ("nan", float("nan")), ("infinity", float("inf")), ("huge-int", 10 ** 5000),
    ("million-digits", "9" * 1_000_000), ("empty", ""), ("blank", " \t"), ("nul", "a\x00b"),
    ("control", "a\x0b\x85b"), ("unicode", "é€²٣"), ("brackets", "[{(<"),
    ("mb-string", "x" * 2**20),
    ("list", [1, "a"]), ("object", {"k": "v"}), ("deep", deep(DEEP)),
    ("secret-shaped", f"sig={SECRET}2"),
]


def examples() -> Dict[str, Tuple[Dict[str, Any], Dict[str, Any]]]:
    """One valid (public, protected) settings pair per command."""
    capture = {"commandToExecute": "packetCapture", "packetCapture": {
        "name": "c1", "timeLimitInSeconds": 60, "bytesToCapturePerPacket": 0,
        "totalBytesPerSession": 1048576, "interfaces": ["eth0"],
        "filters": [{"protocol": "TCP", "localIPAddress": "10.0.0.4", "localPort": "80",
                     "remoteIPAddress": "10.0.0.5-10.0.0.9", "remotePort": "1000-2000"}],
        "storageLocation": {"storagePath": "https://acct.blob.core.windows.net/caps/c1.cap",
                            "filePath": "/var/captures/c1.cap"}}}
    check = {"commandToExecute": "connectivityCheck", "connectivityCheck": {
        "destination": {"address": "10.0.0.5", "port": 443}, "protocol": "Tcp", "probes": 3}}
    snapshot_public, snapshot_protected = settings_dicts(
        [f"https://acct.blob.core.windows.net/disks/d0.vhd?sv=2024&sig={SECRET}3"])
    return {"packetCapture": (capture, {"storageSasToken": f"sv=2024&sig={SECRET}4",
                                        "statusBlobUri": STATUS_URI}),
            "connectivityCheck": (check, {"statusBlobUri": STATUS_URI}),
            "snapshot": (snapshot_public, dict(snapshot_protected, statusBlobUri=STATUS_URI))}


def leaf_paths(value: Any, path: Tuple[Any, ...] = ()) -> Iterator[Tuple[Any, ...]]:
    """Every key and list item of a settings object, containers included."""
    if path:
        yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from leaf_paths(item, path + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from leaf_paths(item, path + (index,))


def replaced(document: Any, path: Tuple[Any, ...], value: Any) -> Any:
    copy = json.loads(json.dumps(document))
    target = copy
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return copy


def cases() -> Iterator[Any]:
    for command, (public, protected) in examples().items():
        for side, document in (("public", public), ("protected", protected)):
            for path in leaf_paths(document):
                if path == ("commandToExecute",):
                    continue  # which command it is: checked on its own below
                field = ".".join(str(p) for p in path)
                yield pytest.param(command, side, path, id=f"{command}:{side}:{field}")


PARSERS = build_registry({})


@pytest.mark.parametrize("command,side,path", list(cases()))
def test_every_field_survives_every_hostile_value(command, side, path):
    public, protected = examples()[command]
    failures = []
    for name, value in HOSTILE:
        pub, prot = public, protected
        if side == "public":
            pub = replaced(public, path, value)
        else:
            prot = replaced(protected, path, value)
        raw = RawSettings(1, Path("1.settings"), pub, "x" if prot else None, "T")
        started = time.monotonic()
        try:
            parse_settings(raw, prot, {k: op.parse for k, op in PARSERS.items()})
            outcome = None
        except HandlerError as exc:
            outcome = exc
        except Exception as exc:  # noqa: BLE001 - the finding itself
            failures.append(f"{name}: {type(exc).__name__} escaped: {str(exc)[:200]}")
            continue
        elapsed = time.monotonic() - started
        if elapsed > 1.0:
            failures.append(f"{name}: took {elapsed:.1f}s")
        if outcome is None:
            continue
        redactor = Redactor()  # what the handler does before any message leaves it
        redactor.add_values(prot)
        message = redactor(str(outcome))
        if outcome.code == HandlerError.code:
            failures.append(f"{name}: code 1 (internal): {message[:200]}")
        if SECRET in message:
            failures.append(f"{name}: a secret is in the message: {message[:300]}")
        if len(message) > 20_000:
            failures.append(f"{name}: a {len(message)}-character message")
        key = next((p for p in reversed(path) if isinstance(p, str)), "")
        if isinstance(outcome, SettingsValidationError) and key.lower() not in message.lower():
            failures.append(f"{name}: the message does not name {key!r}: {message[:200]}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("name,value", HOSTILE, ids=[n for n, _ in HOSTILE])
def test_command_to_execute_itself(name, value):
    raw = RawSettings(1, Path("1.settings"), {"commandToExecute": value}, None, None)
    with pytest.raises(HandlerError) as caught:
        parse_settings(raw, {}, {k: op.parse for k, op in PARSERS.items()})
    assert caught.value.code != HandlerError.code and "commandToExecute" in str(caught.value)
    assert len(str(caught.value)) < 2_000, "the value is never echoed whole"


@pytest.mark.parametrize("shape", ["deep-array", "deep-object", "million-digit-number"])
def test_a_settings_file_of_any_shape_is_a_coded_error(tmp_path, shape):
    """The agent writes the file; whatever is in it, reading it never escapes as code 1."""
    body = {"deep-array": "[" * 200_000 + "]" * 200_000,
            "deep-object": '{"a":' * 200_000 + "1" + "}" * 200_000,
            "million-digit-number": "9" * 1_000_000}[shape]
    text = ('{"runtimeSettings":[{"handlerSettings":{"publicSettings":{"commandToExecute":'
            f'"connectivityCheck","x":{body}}}}}}}]}}')
    (tmp_path / "1.settings").write_text(text)
    with pytest.raises(HandlerError) as caught:
        read_settings(tmp_path, 1)
    assert caught.value.code == 11, caught.value


@pytest.mark.parametrize("shape", ["deep-array", "array", "number", "million-digit-number"])
def test_protected_settings_of_any_shape_are_a_coded_error(certificate, shape):
    plaintext = {"deep-array": "[" * 200_000 + "]" * 200_000, "array": "[1, 2]",
                 "number": "42", "million-digit-number": "9" * 1_000_000}[shape]
    b64 = certificate.encrypt_bytes(plaintext.encode(), "aes256")
    with pytest.raises(HandlerError) as caught:
        decrypt_protected_settings(b64, certificate.thumbprint, certificate.crt.parent)
    assert caught.value.code == 25, caught.value


def test_the_redactor_takes_protected_settings_of_any_depth_and_kind():
    redactor = Redactor()
    redactor.add_values({"a": deep(DEEP), "token": 987654321012, "nested": [{"s": SECRET}]})
    assert SECRET not in redactor(f"saw {SECRET}"), "a nested string secret is registered"
    assert "987654321012" not in redactor("saw 987654321012"), "a long numeric secret too"


@pytest.mark.root
@pytest.mark.parametrize("command", ["packetCapture", "connectivityCheck", "snapshot"])
def test_a_sample_through_the_packaged_handler(agent, ext_dir, azurite, command):
    """The same values, end to end: enable ends in a coded error status, prints no traceback,
    and no secret reaches the status file or the logs. The storage URLs point at the local
    emulator, whose answer to a forged signature is a quick 403 (no name leaves the machine)."""
    public, protected = json.loads(json.dumps(examples()[command]).replace(
        "https://acct.blob.core.windows.net", azurite.account_url))
    samples = [("nul", "a\x00b"), ("deep", deep(500)), ("mb-string", "x" * 2**20),
               ("secret-shaped", f"sig={SECRET}2")]
    paths = [p for p in leaf_paths(public) if p != ("commandToExecute",)]
    paths = paths[::max(1, len(paths) // 12)]  # a spread: every field is swept above
    seq = 0
    for index, path in enumerate(paths):
        name, value = samples[index % len(samples)]
        seq += 1
        agent.write_settings(ext_dir, seq, replaced(public, path, value), protected)
        run = agent.run(ext_dir, "enable", seq, timeout=60)
        status = agent.status(ext_dir, seq)
        where = f"{'.'.join(map(str, path))}={name}"
        assert "Traceback" not in run.output, f"{where}: {run.output[-500:]}"
        assert status is not None and status["code"] != 1, f"{where}: {status}"
        if status["status"] == "error":
            assert run.returncode != 0, f"{where}: an error status exits non-zero"
    written = [p for p in ext_dir.rglob("*") if p.is_file() and "config" not in p.parts]
    written += [p for p in agent.log_root.rglob("*") if p.is_file()]
    for path in written:
        assert SECRET not in path.read_text("utf-8", "replace"), f"secret in {path}"
