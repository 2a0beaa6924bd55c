"""Hunt: a unicode digit in customSettings.backupRetryCount escapes validation as an internal
error (isdigit() accepts '²', int() refuses it): the backup service reads code 2, not 11."""
from __future__ import annotations

import pytest

from tests.snapshot.conftest import settings_dicts

pytestmark = pytest.mark.root

DISK = "http://127.0.0.1:9/acct/vhds/osdisk.vhd?sv=2022-11-02&sr=b&sp=rw&sig=AAAA"


@pytest.mark.parametrize("value", ["\u00b2", "\u2460"], ids=["superscript-two", "circled-one"])
def test_a_unicode_digit_retry_count_is_a_parameter_error(agent, ext_dir, value):
    public, protected = settings_dicts([DISK], custom={"isManagedVm": True,
                                                       "backupRetryCount": value})
    agent.write_settings(ext_dir, 1, public, protected)
    run = agent.run(ext_dir, "enable", 1, timeout=60)
    status = agent.status(ext_dir, 1)
    assert status is not None and status["status"] == "error", status
    message = status["formattedMessage"]["message"]
    assert status["code"] == 11 and "backupRetryCount" in message, \
        f"code {status['code']}: {message[:200]} / {run.output[-300:]}"
