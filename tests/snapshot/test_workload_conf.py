"""workload.conf: each mistake has its code (501/502/503/505); credString never leaks."""
from __future__ import annotations

import json
import os
from datetime import datetime, timezone

import pytest

from plumbing.blobstore import BlobStore
from plumbing.redact import Redactor
from plumbing.retry import NO_RETRY
from snapshot.config import load_local_config
from snapshot.errors import WorkloadConfigError
from snapshot.log import BufferedLog
from snapshot.pghooks import PostgresHooks
from snapshot.runner import run_snapshot
from snapshot.settings import parse_snapshot_settings
from snapshot.workload import credential_env, load_workload_config, parse_conninfo
from tests.snapshot.conftest import settings_dicts

SECRET = "Hunter2-S3cret"
URI = "https://acct.blob.core.windows.net/vhds/d0.vhd?sv=2014-02-14&sr=b&sig=S3CRETsig%3D&sp=rw"

# credString shapes that are wrong; each carries the secret (or a fragment we planted).
BAD_CRED = {
    "no-equals": f"host=/tmp user=pg password {SECRET}",
    "secret-alone": f"{SECRET}",
    "unknown-key": f"user=pg pwd={SECRET}",
    "unknown-key-is-secret": f"user=pg {SECRET}=x",
    "unterminated-quote": f"user=pg password='{SECRET}",
    "unicode-key": f"user=pg pässwörd={SECRET}",
    "newline": f"user=pg\n    password {SECRET}",
    "dangling-equals": f"user=pg password= = {SECRET}",
}


def write_conf(tmp_path, cred: str, name: str = "postgres", extra: str = "") -> str:
    path = tmp_path / "workload.conf"
    lines = cred.split("\n")
    value = "\n".join([lines[0]] + ["    " + line.strip() for line in lines[1:]])
    path.write_text(f"[workload]\nworkload_name = {name}\nlinux_user = postgres\n{extra}"
                    f"credString = {value}\n")
    return str(path)


@pytest.mark.parametrize("shape", sorted(BAD_CRED))
def test_bad_cred_string_is_501_and_never_echoed(shape, tmp_path):
    redactor = Redactor()
    with pytest.raises(WorkloadConfigError) as info:
        load_workload_config(write_conf(tmp_path, BAD_CRED[shape]), redactor)
    message = info.value.message
    assert info.value.code == 501, f"{shape}: workload.conf parsing is 501: {message}"
    assert "credString" in message, f"{shape}: the message names the key: {message}"
    for fragment in (SECRET, SECRET[:8], "pässwörd", "pwd="):
        assert fragment.lower() not in message.lower(), f"{shape}: {fragment!r} echoed: {message}"
    assert SECRET not in redactor.redact(f"x {SECRET} y"), "registered before any message"


@pytest.mark.parametrize("cred", [
    f"host=/run/pg port=5432 user=postgres password = {SECRET} dbname=db",
    f"host=/run/pg user=postgres password='{SECRET}' dbname=db",
    f"host = /run/pg\n    user=postgres\n    password={SECRET}",
])
def test_conninfo_shapes_that_libpq_accepts(cred, tmp_path):
    redactor = Redactor()
    config = load_workload_config(write_conf(tmp_path, cred), redactor)
    assert credential_env(config)["PGPASSWORD"] == SECRET, "spaces, quotes, lines: libpq rules"
    assert credential_env(config)["PGHOST"] == "/run/pg"
    assert SECRET not in redactor.redact(f"password is {SECRET}!"), "the password is redacted"


def test_quoted_values_unescape_as_libpq_does():
    assert parse_conninfo(r"password='it\'s a \\ secret' user=me") == [
        ("password", "it's a \\ secret"), ("user", "me")]


@pytest.mark.parametrize(("conf", "code", "words"), [
    ("[workload]\nworkload_name = db2\n", 503, "workload_name"),
    ("[workload]\nworkload_name = oracle\nlinux_user = oracle\n", 503, "oracle"),
    ("[workload]\nworkload_name = postgres\n", 505, "credString or linux_user"),
    ("[workload]\nworkload_name = postgres\nlinux_user = pg\nrole = boss\n", 502, "role"),
    ("[workload]\nworkload_name = postgres\nlinux_user = pg\ntimeout = soon\n", 501,
     "timeout"),
    ("no section here\n", 501, "workload.conf"),
    ("[workload]\nworkload_name = postgres\nworkload_name = mysql\n", 501, "line 3"),
])
def test_workload_conf_codes(conf, code, words, tmp_path):
    path = tmp_path / "workload.conf"
    path.write_text(conf)
    with pytest.raises(WorkloadConfigError) as info:
        config = load_workload_config(str(path), Redactor())
        if config is not None and config.name != "postgres":
            from snapshot.workload import unsupported
            raise unsupported(config)
    assert info.value.code == code, f"expected {code}: {info.value.message}"
    assert words in info.value.message, f"the message should say {words!r}: {info.value}"


def test_password_with_spaces_around_equals_never_reaches_status_or_log(tmp_path):
    """The reported leak: `password = hunter2` was echoed before it was registered."""
    conf = tmp_path / "workload.conf"
    conf.write_text("[workload]\nworkload_name = postgres\nlinux_user = postgres\n"
                    f"credString = host=/nonexistent user=x password = {SECRET} bogus\n")
    public, protected = settings_dicts([URI])
    settings = parse_snapshot_settings(public, protected, now=datetime.now(timezone.utc))
    env = {"VMSNAPSHOT_CONF": str(tmp_path / "none.conf"),
           "VMSNAPSHOT_PLUGIN_CONFIG": str(tmp_path / "none.json"),
           "VMSNAPSHOT_WORKLOAD_CONF": str(conf)}
    log = BufferedLog()
    result = run_snapshot(settings, blob_store=BlobStore(policy=NO_RETRY, timeout=2),
                          config=load_local_config(env), log=log)
    document = json.dumps(result.status_blob_document(datetime.now(timezone.utc)))
    for where, text in (("message", result.message), ("log", log.text()),
                        ("status", document)):
        assert SECRET.lower() not in text.lower(), f"the password leaked into the {where}: {text}"
    assert result.code == 501, result.message


@pytest.mark.root
@pytest.mark.parametrize(("conf_mode", "dir_mode", "words"), [
    (0o666, 0o700, "writable by group/other"),
    (0o600, 0o777, "without the sticky bit"),
])
def test_workload_conf_others_could_write_is_refused(conf_mode, dir_mode, words, tmp_path):
    """It names the binary run as root: a file or directory others may write is refused."""
    folder = tmp_path / "etc"
    folder.mkdir()
    path = folder / "workload.conf"
    path.write_text("[workload]\nworkload_name = postgres\nlinux_user = postgres\n")
    os.chmod(path, conf_mode)
    os.chmod(folder, dir_mode)
    with pytest.raises(WorkloadConfigError) as info:
        load_workload_config(str(path), Redactor())
    assert info.value.code == 501 and words in info.value.message, info.value.message


@pytest.mark.root
def test_psql_others_could_replace_is_never_run(tmp_path):
    """command_path in a directory anyone may write: refused (500) before it runs."""
    folder = tmp_path / "bin"
    folder.mkdir()
    ran = tmp_path / "ran"
    (folder / "psql").write_text(f"#!/bin/sh\ntouch {ran}\n")
    os.chmod(folder / "psql", 0o755)
    os.chmod(folder, 0o777)
    conf = tmp_path / "workload.conf"
    conf.write_text(f"[workload]\nworkload_name = postgres\ncommand_path = {folder}\n"
                    "credString = host=/nonexistent\n")
    hooks = PostgresHooks(load_workload_config(str(conf), Redactor()), BufferedLog())
    pre = hooks.pre()
    assert (pre.ok, pre.code) == (False, 500) and "sticky" in pre.message, pre.message
    assert not ran.exists(), "the replaceable psql must not run"
