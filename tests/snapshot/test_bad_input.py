"""The bad-input corpus: each case ends in its code and a clear message, never a frozen mount."""
from __future__ import annotations

import base64
import json
import os
from datetime import datetime, timezone

import pytest

from plumbing.blobstore import BlobStore
from plumbing.retry import NO_RETRY
from snapshot.config import load_local_config
from snapshot.errors import SnapshotError
from snapshot.log import BufferedLog
from snapshot.runner import run_snapshot
from snapshot.settings import parse_snapshot_settings
from tests.snapshot.conftest import (
    b64,
    make_disks,
    settings_dicts,
    write_plugin_config,
    write_script,
    write_vmbackup_conf,
)

pytestmark = pytest.mark.root
NOBODY = 65534


def _public(key, value):
    return lambda pub, pro, ctx: pub.__setitem__(key, value)


def _protected_obj(obj):
    return lambda pub, pro, ctx: pro.__setitem__("objectStr", b64(obj))


def _public_obj(obj):
    return lambda pub, pro, ctx: pub.__setitem__("objectStr", b64(obj))


def _tamper_sig(pub, pro, ctx):
    uri = ctx["uris"][0].replace("sig=", "sig=AAAA")
    pro["objectStr"] = b64({"blobSASUri": [uri]})


def _expired(pub, pro, ctx):
    pro["objectStr"] = b64({"blobSASUri": [ctx["azurite"].expired_blob_sas_uri("disksx",
                                                                               "d.vhd")]})


def _plugin(mode=0o600, owner=0, raw=None, pre=None, post=None, pre_mode=0o700,
            pre_owner=0, post_mode=0o700, script_dir_mode=None, confdir_mode=None,
            confdir_owner=None, symlink=False):
    def apply(pub, pro, ctx):
        tmp = ctx["tmp"]
        scripts = tmp / "scripts"
        scripts.mkdir(mode=0o700, exist_ok=True)
        pre_path = pre or str(write_script(scripts / "pre.sh", f"echo ran >> {tmp}/ran",
                                           pre_mode))
        post_path = post or str(write_script(scripts / "post.sh", f"echo ran >> {tmp}/ran",
                                             post_mode))
        os.chown(pre_path, pre_owner, 0) if os.path.exists(pre_path) else None
        if script_dir_mode is not None:  # after the scripts are written: chmod, not umask
            os.chmod(scripts, script_dir_mode)
        path = write_plugin_config(ctx["confdir"], mode, preScriptLocation=pre_path,
                                   postScriptLocation=post_path)
        if raw is not None:
            path.write_text(raw)
        os.chown(path, owner, 0)
        if symlink:  # the config is a symlink to a file that is gone
            path.unlink()
            path.symlink_to(tmp / "gone.json")
        if confdir_mode is not None:
            os.chmod(ctx["confdir"], confdir_mode)
        if confdir_owner is not None:
            os.chown(ctx["confdir"], confdir_owner, 0)
    return apply


def _foreign_symlink(pub, pro, ctx):
    """pre.sh is reached through a symlink someone else owns: they can repoint it."""
    _plugin()(pub, pro, ctx)
    link = ctx["tmp"] / "sticky"
    link.mkdir(mode=0o1777)
    os.symlink(ctx["tmp"] / "scripts" / "pre.sh", link / "pre.sh")
    os.lchown(link / "pre.sh", NOBODY, NOBODY)
    write_plugin_config(ctx["confdir"], preScriptLocation=str(link / "pre.sh"),
                        postScriptLocation=str(ctx["tmp"] / "scripts" / "post.sh"))


def _conf_text(name, text):
    return lambda pub, pro, ctx: (ctx["confdir"] / name).write_text(text)


WORKLOAD = "[workload]\nworkload_name = postgres\nlinux_user = postgres\n"
CASES = {
    "objectStr-not-base64": (_public("objectStr", "%%%not base64"), 11,
                             "public objectStr is not valid base64"),
    "objectStr-not-json": (_public("objectStr", base64.b64encode(b"{nope").decode()), 11,
                           "is not valid JSON"),
    "blobSASUri-missing": (_protected_obj({"other": 1}), 11, "blobSASUri is missing"),
    "backupMetadata-missing": (_public_obj({"includedDisks": {}}), 11,
                               "backupMetadata is missing"),
    "sas-malformed": (_protected_obj({"blobSASUri": ["ftp://x/y?sig=secretvalue123"]}), 11,
                      "blobSASUri[0]"),
    "sas-expired": (_expired, 11, "expired"),
    "sas-rejected-403": (_tamper_sig, 15, "HTTP 403"),
    "ticks-malformed": (_public("commandStartTimeUTCTicks", "soon"), 11,
                        "commandStartTimeUTCTicks"),
    "ticks-too-old": (_public("commandStartTimeUTCTicks", "6.36458E+17"), 402, "too late"),
    "command-unknown": (_public("commandToExecute", "explode"), 11, "commandToExecute"),
    "lun-list-invalid": (_public_obj({"backupMetadata": [{"Key": "K", "Value": "v"}],
                                      "includedDisks": {"dataDiskLunList": [1, 1]}}), 17,
                         "repeats LUN 1"),
    "lun-not-present": (_public_obj({"backupMetadata": [{"Key": "K", "Value": "v"}],
                                     "includedDisks": {"dataDiskLunList": [0, 1],
                                                       "isOSDiskIncluded": True}}), 17,
                        "a listed LUN has no disk blob"),
    "vmbackup-conf-malformed": (_conf_text("vmbackup.conf", "[SnapshotThread]\ntimeout = x\n"),
                                11, "timeout"),
    "plugin-config-malformed": (_plugin(raw="{not json"), 305, "not valid JSON"),
    "plugin-config-bad-values": (_plugin(raw='{"timeoutInSeconds": 99999}'), 305,
                                 "timeoutInSeconds"),
    "plugin-config-dangling-symlink": (_plugin(symlink=True), 316, "does not exist"),
    "plugin-config-wrong-owner": (_plugin(owner=NOBODY), 318, "not root"),
    "plugin-config-too-open": (_plugin(mode=0o644), 317, "group/other"),
    "plugin-config-dir-writable": (_plugin(confdir_mode=0o777), 317, "without the sticky bit"),
    "plugin-config-dir-not-root": (_plugin(confdir_owner=NOBODY), 318, "owned by uid"),
    "pre-script-missing": (_plugin(pre="/nonexistent/pre.sh"), 302, "does not exist"),
    "post-script-missing": (_plugin(post="/nonexistent/post.sh"), 303, "does not exist"),
    "pre-script-not-executable": (_plugin(pre_mode=0o600), 306, "not executable"),
    "pre-script-wrong-owner": (_plugin(pre_owner=NOBODY), 306, "not root"),
    "post-script-too-open": (_plugin(post_mode=0o755), 307, "group/other"),
    "script-dir-world-writable": (_plugin(script_dir_mode=0o777), 306, "without the sticky bit"),
    "script-via-foreign-symlink": (_foreign_symlink, 306, "symlink"),
    "workload-name-invalid": (_conf_text("workload.conf", "[workload]\nworkload_name = db2\n"),
                              503, "workload_name"),
    "workload-cred-bad-key": (_conf_text("workload.conf", WORKLOAD +
                                         "credString = secret=hunter22x\n"), 501,
                              "credString item 1"),
    "workload-unsupported": (_conf_text("workload.conf", "[workload]\nworkload_name = oracle\n"
                                                         "linux_user = oracle\n"),
                             503, "not available"),
    "workload-auth-missing": (_conf_text("workload.conf", "[workload]\nworkload_name = postgres"
                                                          "\n"), 505, "authorization missing"),
    "workload-role-invalid": (_conf_text("workload.conf", WORKLOAD + "role = boss\n"), 502,
                              "role"),
    "workload-conf-garbage": (_conf_text("workload.conf", "no section here\n"), 501,
                              "workload.conf"),
}


def attempt(public, protected, confdir) -> SnapshotError:
    """Run the edge (parse, local config) and the run; return the coded outcome."""
    env = {"VMSNAPSHOT_CONF": str(confdir / "vmbackup.conf"),
           "VMSNAPSHOT_PLUGIN_CONFIG": str(confdir / "VMSnapshotScriptPluginConfig.json"),
           "VMSNAPSHOT_WORKLOAD_CONF": str(confdir / "workload.conf")}
    log = BufferedLog()
    log.redactor.add_values(protected)
    try:
        settings = parse_snapshot_settings(public, protected, now=datetime.now(timezone.utc))
        config = load_local_config(env)
    except SnapshotError as exc:
        return exc
    result = run_snapshot(settings, blob_store=BlobStore(policy=NO_RETRY, timeout=5),
                          config=config, log=log)
    assert "sig=" not in log.text().replace("sig=REDACTED", ""), "SAS signature in the log"
    return SnapshotError(result.message, result.code)


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input(case, loopfs, azurite, confdir, tmp_path):
    mount = loopfs("ext4").mountpoint
    write_vmbackup_conf(confdir, [mount])
    uris = make_disks(azurite, 1)
    public, protected = settings_dicts(uris)
    mutate, code, words = CASES[case]
    mutate(public, protected, {"uris": uris, "azurite": azurite, "tmp": tmp_path,
                               "confdir": confdir})
    outcome = attempt(public, protected, confdir)
    assert outcome.code == code, f"{case}: expected code {code}, got {outcome.code}: {outcome}"
    assert words in outcome.message, f"{case}: message should say {words!r}: {outcome.message}"
    assert "secretvalue123" not in outcome.message, "a SAS signature leaked into the message"
    assert "hunter22x" not in outcome.message, "a credential leaked into the message"
    assert not (tmp_path / "ran").exists(), f"{case}: no script may run on refused input"
    with open(os.path.join(mount, "probe"), "w") as stream:  # a frozen mount would block here
        stream.write(json.dumps(case))
