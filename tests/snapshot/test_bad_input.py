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
            pre_owner=0, post_mode=0o700):
    def apply(pub, pro, ctx):
        tmp = ctx["tmp"]
        pre_path = pre or str(write_script(tmp / "pre.sh", f"echo ran >> {tmp}/ran", pre_mode))
        post_path = post or str(write_script(tmp / "post.sh", f"echo ran >> {tmp}/ran",
                                             post_mode))
        os.chown(pre_path, pre_owner, 0) if os.path.exists(pre_path) else None
        path = write_plugin_config(ctx["confdir"], mode, preScriptLocation=pre_path,
                                   postScriptLocation=post_path)
        if raw is not None:
            path.write_text(raw)
        os.chown(path, owner, 0)
    return apply


def _conf_text(name, text):
    return lambda pub, pro, ctx: (ctx["confdir"] / name).write_text(text)


CASES = {
    "objectStr-not-base64": (_protected_obj(None) and _public("objectStr", "%%%not base64"),
                             11, "public objectStr is not valid base64"),
    "objectStr-not-json": (_public("objectStr", base64.b64encode(b"{nope").decode()), 11,
                           "is not JSON"),
    "blobSASUri-missing": (_protected_obj({"other": 1}), 11, "blobSASUri is missing"),
    "backupMetadata-missing": (_public_obj({"includedDisks": {}}), 11,
                               "backupMetadata is missing"),
    "sas-malformed": (_protected_obj({"blobSASUri": ["ftp://x/y?sig=secretvalue123"]}), 11,
                      "blobSASUri[0]"),
    "sas-expired": (_expired, 11, "expired"),
    "sas-rejected-403": (_tamper_sig, 2, "HTTP 403"),
    "ticks-malformed": (_public("commandStartTimeUTCTicks", "soon"), 11,
                        "commandStartTimeUTCTicks"),
    "ticks-too-old": (_public("commandStartTimeUTCTicks", "6.36458E+17"), 402, "too late"),
    "command-unknown": (_public("commandToExecute", "explode"), 11, "commandToExecute"),
    "vmbackup-conf-malformed": (_conf_text("vmbackup.conf", "[SnapshotThread]\ntimeout = x\n"),
                                11, "timeout"),
    "plugin-config-malformed": (_plugin(raw="{not json"), 314, "not valid JSON"),
    "plugin-config-bad-values": (_plugin(raw='{"timeoutInSeconds": 99999}'), 314,
                                 "timeoutInSeconds"),
    "plugin-config-wrong-owner": (_plugin(owner=NOBODY), 309, "not root"),
    "plugin-config-too-open": (_plugin(mode=0o644), 309, "group/other"),
    "pre-script-missing": (_plugin(pre="/nonexistent/pre.sh"), 302, "not found"),
    "pre-script-not-executable": (_plugin(pre_mode=0o600), 310, "not executable"),
    "pre-script-wrong-owner": (_plugin(pre_owner=NOBODY), 310, "not root"),
    "post-script-too-open": (_plugin(post_mode=0o755), 311, "group/other"),
    "workload-conf-malformed": (_conf_text("workload.conf", "[workload]\nworkload_name = db2\n"),
                                500, "workload_name"),
    "workload-cred-bad-key": (_conf_text("workload.conf", "[workload]\nworkload_name = postgres\n"
                                                          "credString = secret=hunter22x\n"),
                              500, "credString key"),
    "workload-unsupported": (_conf_text("workload.conf", "[workload]\nworkload_name = oracle\n"),
                             501, "not available"),
    "workload-conf-garbage": (_conf_text("workload.conf", "no section here\n"), 500,
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
    assert not (tmp_path / "ran").exists(), f"{case}: no script may run on refused input"
    with open(os.path.join(mount, "probe"), "w") as stream:  # a frozen mount would block here
        stream.write(json.dumps(case))
