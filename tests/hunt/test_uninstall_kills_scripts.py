"""Hunt: uninstall while a pre- or post-script runs. Uninstall SIGTERMs the worker, waits its
grace, then SIGKILLs the worker's process group; scripts run in sessions of their own, so they
survive the extension that started them (and a pre-script interrupted by the SIGTERM is not
killed at all)."""
from __future__ import annotations

import os
import signal

import psutil
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


def alive(pid_file) -> bool:
    try:
        return psutil.Process(int(pid_file.read_text())).status() != psutil.STATUS_ZOMBIE
    except (psutil.Error, FileNotFoundError, ValueError):
        return False


def test_uninstall_leaves_no_script_running(agent, ext_dir, azurite, confdir, tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    scripts = tmp_path / "scripts"
    scripts.mkdir(mode=0o700)
    # The pre-script hangs (the SIGTERM interrupts it); the post-script hangs too, so the
    # worker outlives uninstall's grace and is killed.
    pre = write_script(scripts / "pre.sh", f"echo $$ > {marks}/pre.pid\nexec sleep 600")
    post = write_script(scripts / "post.sh", f"echo $$ > {marks}/post.pid\nexec sleep 600")
    write_plugin_config(confdir, preScriptLocation=str(pre), postScriptLocation=str(post),
                        timeoutInSeconds=1800)
    write_vmbackup_conf(confdir, [], fsfreeze=False)
    agent.extra_env.update(snapshot_env(confdir))
    agent.extra_env["VMSNAPSHOT_PLUGIN_CONFIG"] = str(confdir / "VMSnapshotScriptPluginConfig.json")
    agent.write_settings(ext_dir, 1, *settings_dicts(make_disks(azurite, 1)))
    try:
        assert agent.run(ext_dir, "enable", 1).returncode == 0
        assert wait_for(lambda: alive(marks / "pre.pid"), timeout=60), "the pre-script runs"
        assert agent.run(ext_dir, "uninstall", 1, timeout=120).returncode == 0
        left = [name for name in ("pre.pid", "post.pid") if alive(marks / name)]
        assert left == [], f"scripts still running after uninstall: {left}"
    finally:
        for name in ("pre.pid", "post.pid"):
            if alive(marks / name):
                os.kill(int((marks / name).read_text()), signal.SIGKILL)
