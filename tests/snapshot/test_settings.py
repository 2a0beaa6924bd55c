"""Settings, local config, task dedupe, mount selection and the buffered log."""
from __future__ import annotations

import multiprocessing
from datetime import datetime, timedelta, timezone

import pytest

from snapshot.config import load_local_config
from snapshot.errors import SnapshotSettingsError
from snapshot.log import BufferedLog
from snapshot.mounts import Mount, select_mounts
from snapshot.settings import parse_snapshot_settings, ticks_to_datetime
from snapshot.tasks import TaskRegistry
from tests.snapshot.conftest import b64, settings_dicts

URI = "https://acct.blob.core.windows.net/vhds/d0.vhd?sv=2014-02-14&sr=b&sig=S3CRETsig%3D&sp=rw"


def test_exponent_ticks_parse_to_the_documented_date():
    when = ticks_to_datetime("6.36458E+17")
    assert when.year == 2017 and when.month == 11, f"6.36458E+17 is Nov 2017, got {when}"


def test_every_problem_is_reported_at_once():
    public = {"commandToExecute": "snapshot", "commandStartTimeUTCTicks": "x",
              "objectStr": "!!"}
    with pytest.raises(SnapshotSettingsError) as info:
        parse_snapshot_settings(public, {}, now=datetime.now(timezone.utc))
    text = info.value.message
    for field in ("taskId", "commandStartTimeUTCTicks", "public objectStr", "protected objectStr",
                  "blobSASUri", "backupMetadata"):
        assert field in text, f"{field} should be named in: {text}"
    assert info.value.code == 11, "parameter error"


def test_protected_wins_and_secrets_are_listed():
    public, protected = settings_dicts([URI], logs="https://a.blob.core.windows.net/l/x?sig=p1")
    public["logsBlobUri"] = "https://a.blob.core.windows.net/l/public?sig=p2"
    settings = parse_snapshot_settings(public, protected, now=datetime.now(timezone.utc))
    assert settings.logs_blob_uri.endswith("x?sig=p1"), "protected settings win"
    assert URI in settings.secrets(), "the SAS URIs are secrets to redact"
    assert settings.custom.is_managed_vm, "customSettings parsed"


def test_install_needs_no_object_str():
    settings = parse_snapshot_settings({"taskId": "t_1", "commandToExecute": "install"}, {},
                                       now=datetime.now(timezone.utc))
    assert settings.command == "install", "install is accepted without snapshot fields"


def test_too_late_is_402_and_just_in_time_is_not():
    public, protected = settings_dicts([URI])
    start = ticks_to_datetime(public["commandStartTimeUTCTicks"])
    parse_snapshot_settings(public, protected, now=start + timedelta(minutes=139))
    with pytest.raises(SnapshotSettingsError) as info:
        parse_snapshot_settings(public, protected, now=start + timedelta(minutes=141))
    assert info.value.code == 402, "more than 140 min late is 'too late'"


def test_env_overrides_config_paths(tmp_path):
    conf = tmp_path / "vmbackup.conf"
    conf.write_text("[SnapshotThread]\nfsfreeze = False\ntimeout = 7\nMountsToSkip = /a, /b\n"
                    "MountsToFreeze = /mnt/x\n")
    config = load_local_config({"VMSNAPSHOT_CONF": str(conf), "VMSNAPSHOT_PLUGIN_CONFIG": "/p",
                                "VMSNAPSHOT_WORKLOAD_CONF": "/w"})
    assert (config.fsfreeze, config.freeze_timeout) == (False, 7.0), config
    assert config.mounts_to_skip == ("/a", "/b") and config.mounts_to_freeze == ("/mnt/x",)
    assert (config.plugin_config_path, config.workload_conf_path) == ("/p", "/w")


def test_mount_selection_rules():
    mounts = [Mount("/dev/sda1", "/", "ext4", ("rw",)),
              Mount("/dev/sdb1", "/data", "xfs", ("rw",)),
              Mount("/dev/sdb1", "/bind", "xfs", ("rw",)),
              Mount("/dev/sdc1", "/ro", "ext4", ("ro",)),
              Mount("server:/x", "/nfs", "nfs4", ("rw",)),
              Mount("proc", "/proc", "proc", ("rw",)),
              Mount("/dev/loop3", "/snap/x", "ext4", ("rw",)),
              Mount("/dev/sdd1", "/skipme", "btrfs", ("rw",))]
    chosen, notes = select_mounts(mounts, skip=["/skipme"])
    assert [m.mountpoint for m in chosen] == ["/data", "/"], f"/ last, rest excluded: {notes}"
    only, _ = select_mounts(mounts, only=["/snap/x"])
    assert [m.mountpoint for m in only] == ["/snap/x"], "MountsToFreeze names exactly these"


def _claim(args):
    state_dir, task = args
    return TaskRegistry(state_dir).claim(task)


def test_task_claim_is_atomic_across_processes(tmp_path):
    with multiprocessing.get_context("fork").Pool(6) as pool:
        results = pool.map(_claim, [(str(tmp_path), "task_1")] * 12)
    assert results.count(True) == 1, f"exactly one claimer wins: {results}"
    assert not TaskRegistry(str(tmp_path)).claim("task_1"), "already processed"


def test_log_lines_are_redacted_when_stored():
    log = BufferedLog()
    log.redactor.add(URI)
    log.info(f"snapshotting {URI}")
    log.info("conn AccountKey=abcd1234== password=hunter22")
    text = log.text()
    assert "S3CRETsig" not in text and "hunter22" not in text and "abcd1234" not in text, text


def test_object_str_with_whitespace_decodes():
    public, protected = settings_dicts([URI])
    protected["objectStr"] = "  " + b64({"blobSASUri": [URI]}) + "\n"
    settings = parse_snapshot_settings(public, protected, now=datetime.now(timezone.utc))
    assert settings.blob_sas_uris == (URI,), "whitespace around base64 is stripped"


def test_install_reports_success_without_touching_storage():
    from plumbing.blobstore import BlobStore
    from snapshot.runner import run_snapshot

    settings = parse_snapshot_settings({"taskId": "t_1", "commandToExecute": "install"}, {},
                                       now=datetime.now(timezone.utc))
    result = run_snapshot(settings, blob_store=BlobStore(), config=load_local_config({}),
                          log=BufferedLog())
    assert (result.status, result.code) == ("success", 1), result.message
