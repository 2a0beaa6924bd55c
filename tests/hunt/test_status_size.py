"""Hunt: the local status file of a snapshot with many disks of long (valid) blob names is over
the agent's 128 KiB: the VMSnapshot fields copied into it (snapshotInfo) are never trimmed."""
from __future__ import annotations

import uuid

import pytest

from tests.handler.test_snapshot_via_agent import snapshot_env
from tests.snapshot.conftest import settings_dicts, write_vmbackup_conf

pytestmark = pytest.mark.root

DISKS = 100  # the parser takes up to 128
NAME_CHARS = 900  # Azure allows blob names of up to 1,024 characters


def long_named_disks(azurite, count: int) -> list:
    container = "longnames" + uuid.uuid4().hex[:8]
    azurite.create_container(container)
    uris = []
    for index in range(count):
        name = f"vhds/{index:03d}/" + "d" * (NAME_CHARS - 12) + ".vhd"
        azurite.service().get_blob_client(container, name).create_page_blob(4096)
        uris.append(azurite.blob_sas_uri(container, name))
    return uris


def test_the_status_file_of_a_many_disk_snapshot_stays_under_128_kib(agent, ext_dir, azurite,
                                                                     confdir):
    write_vmbackup_conf(confdir, [], fsfreeze=False)
    agent.extra_env.update(snapshot_env(confdir))
    public, protected = settings_dicts(long_named_disks(azurite, DISKS))
    agent.write_settings(ext_dir, 1, public, protected)
    assert agent.run(ext_dir, "enable", 1).returncode == 0
    path = ext_dir / "status" / "1.status"
    try:
        status = agent.wait_terminal(ext_dir, 1, timeout=120)  # reads it as the agent does
    except AssertionError as exc:
        pytest.fail(f"the status file is not what the agent accepts: {exc}")
    assert status["status"] == "success", status["formattedMessage"]
    assert path.stat().st_size <= 128 * 1024
