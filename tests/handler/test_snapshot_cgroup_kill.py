"""The agent kills every process of the extension's cgroup mid-freeze: nothing stays frozen."""
# ruff: noqa: F811 - the snapshot fixtures are imported so pytest finds them here
from __future__ import annotations

import contextlib
import json
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from devtools.blkthrottle import unwritable
from devtools.cgroups import TestCgroup
from devtools.fakeagent import FakeAgent
from snapshot.freeze import read_watchdog_report
from tests.handler.test_snapshot_via_agent import snapshot_env, the_job
from tests.snapshot.conftest import (  # noqa: F401 - fixtures
    confdir,
    hanging_proxy,
    loopfs,
    make_disks,
    settings_dicts,
    wait_for,
    write_vmbackup_conf,
)

pytestmark = pytest.mark.root


@pytest.fixture
def extension_cgroup() -> Iterator[TestCgroup]:
    """The extension's cgroup, as the agent makes one: v1 cpu and pids, and a cgroup2 child."""
    group = TestCgroup(f"freeze-ext-{uuid.uuid4().hex[:8]}")
    try:
        yield group
    finally:
        group.remove()


@contextlib.contextmanager
def enable_runs_in(group: TestCgroup, ext_dir: Path) -> Iterator[None]:
    """The agent starts the enable command inside the extension's cgroup (the shell joins it
    first, so the handler and every process it starts are born there)."""
    path = ext_dir / "HandlerManifest.json"
    original = path.read_text()
    manifest = json.loads(original)
    command = manifest[0]["handlerManifest"]["enableCommand"]
    manifest[0]["handlerManifest"]["enableCommand"] = group.join_command(command)
    path.write_text(json.dumps(manifest))
    try:
        yield
    finally:
        path.write_text(original)


@pytest.mark.parametrize("fstype", ["ext4", "xfs"])
def test_kill_of_the_whole_extension_cgroup_mid_freeze_leaves_nothing_frozen(
        agent: FakeAgent, ext_dir, azurite, loopfs, confdir, hanging_proxy, extension_cgroup,
        fstype):
    mount = loopfs(fstype).mountpoint
    timeout = 20.0
    write_vmbackup_conf(confdir, [mount], timeout=timeout, extra="SnapshotTimeout = 30\n")
    agent.extra_env.update(snapshot_env(confdir))
    uris = [hanging_proxy.route(u) for u in make_disks(azurite, 1)]
    public, protected = settings_dicts(uris, status=azurite.blob_sas_uri(
        "vmstatus", f"cgroup-kill-{fstype}.json"))
    agent.write_settings(ext_dir, 1, public, protected)
    with enable_runs_in(extension_cgroup, ext_dir):
        assert agent.run(ext_dir, "enable", 1).returncode == 0
    assert hanging_proxy.held.wait(60), "the snapshot should hang while the filesystem is frozen"
    assert the_job(ext_dir)["pid"] in extension_cgroup.procs(), \
        "the snapshot worker runs inside the extension's cgroup"
    assert unwritable([mount], 0.3) == [mount], "the filesystem is frozen before the kill"

    extension_cgroup.kill()
    assert unwritable([mount], timeout + 1.0) == [], \
        "every filesystem must be writable within the watchdog deadline + 1 s of the kill"
    assert wait_for(lambda: bool(list((ext_dir / "state" / "snapshot").glob(
        "*.watchdog.json"))), timeout=5), "the watchdog outlived the kill and recorded the thaw"
    reports = list((ext_dir / "state" / "snapshot").glob("*.watchdog.json"))
    assert read_watchdog_report(str(reports[0]))["reason"] == "died", \
        "the watchdog saw the worker die (not its deadline)"
    agent.run(ext_dir, "enable", 1)
    status = agent.status(ext_dir, 1)
    assert status["status"] == "error" and status["code"] == 121, status
