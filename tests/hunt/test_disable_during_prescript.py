"""Hunt: disable (SIGTERM to the worker) while a pre-script runs. The exception leaves
plumbing.proc.run without killing the script (it runs on in its own session and quiesces the
application), and post-scripts are skipped because the pre phase never returned: the
application stays quiesced, against "post-scripts run whenever pre-scripts ran"."""
from __future__ import annotations

import pytest

from tests.handler.test_snapshot_via_agent import snapshot_env
from tests.snapshot.conftest import (
    make_disks,
    settings_dicts,
    wait_for,
    write_plugin_config,
    write_script,
    write_vmbackup_conf,
)

pytestmark = pytest.mark.root


def test_disable_during_a_pre_script_still_resumes_the_application(agent, ext_dir, azurite,
                                                                   confdir, tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    scripts = tmp_path / "scripts"
    scripts.mkdir(mode=0o700)
    pre = write_script(scripts / "pre.sh", f"touch {marks}/pre-started\nsleep 3\n"
                                           f"touch {marks}/quiesced")
    post = write_script(scripts / "post.sh", f"touch {marks}/resumed")
    write_plugin_config(confdir, preScriptLocation=str(pre), postScriptLocation=str(post),
                        timeoutInSeconds=30)
    write_vmbackup_conf(confdir, [], fsfreeze=False)
    agent.extra_env.update(snapshot_env(confdir))
    agent.extra_env["VMSNAPSHOT_PLUGIN_CONFIG"] = str(confdir / "VMSnapshotScriptPluginConfig.json")
    agent.write_settings(ext_dir, 1, *settings_dicts(make_disks(azurite, 1)))
    assert agent.run(ext_dir, "enable", 1).returncode == 0
    assert wait_for((marks / "pre-started").exists, timeout=60), "the pre-script runs"
    disable = agent.run(ext_dir, "disable", 1, timeout=90)
    assert disable.returncode == 0, disable
    assert wait_for((marks / "resumed").exists, timeout=15), \
        "the pre-script quiesced the application and no post-script ever resumed it"
    assert not wait_for((marks / "quiesced").exists, timeout=4), \
        "the interrupted pre-script is killed (its whole group), not left running on"
