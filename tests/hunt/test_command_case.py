"""Hunt: commandToExecute in another case ("Snapshot", as the original handler accepts, since it
lowercases it) or with surrounding spaces is refused by the handler's operation table as an
unknown command with code 30, a number the backup service does not have; the spec's answer to a
bad command is the parameter error, 11 (or, like the original, to run it)."""
from __future__ import annotations

import pytest

from tests.snapshot.conftest import settings_dicts

pytestmark = pytest.mark.root

DISK = "http://127.0.0.1:9/acct/vhds/osdisk.vhd?sv=2022-11-02&sr=b&sp=rw&sig=AAAA"
SERVICE_CODES = {0, 1, 2, 3, 4, 11, 12, 13, 14, 15, 16, 17, 76, 85, 121, 122, 123, 124, 173,
                 *range(300, 319), 402, *range(500, 513), 556}


@pytest.mark.parametrize("command", ["Snapshot", "SNAPSHOT", " snapshot"])
def test_a_snapshot_command_in_another_case_gets_a_service_code(agent, ext_dir, command):
    public, protected = settings_dicts([DISK])
    public["commandToExecute"] = command
    agent.write_settings(ext_dir, 1, public, protected)
    agent.run(ext_dir, "enable", 1)
    status = agent.status(ext_dir, 1)
    assert status is not None and status["code"] in SERVICE_CODES, \
        f"code {status and status['code']}: {status and status['formattedMessage']['message']}"
