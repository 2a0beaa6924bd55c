"""Hunt: a hostile protectedSettingsCertThumbprint (the settings file's own field) escapes the
coded errors: `Path.is_file()` raises OSError for a file name too long, and the handler
reports code 1 (for VMSnapshot that number means "success"). A NUL in it is handled."""
from __future__ import annotations

import json

import pytest

from tests.snapshot.conftest import settings_dicts

pytestmark = pytest.mark.root

DISK = "http://127.0.0.1:9/acct/vhds/osdisk.vhd?sv=2022-11-02&sr=b&sp=rw&sig=AAAA"
CERTIFICATE_NOT_FOUND = 16  # the backup service's row for protected settings we cannot decrypt


def test_a_300_character_thumbprint_is_a_coded_error(agent, ext_dir):
    thumbprint = "A" * 300  # ENAMETOOLONG for <LibDir>/<THUMBPRINT>.crt
    public, protected = settings_dicts([DISK])
    path = agent.write_settings(ext_dir, 1, public, protected)
    document = json.loads(path.read_text())
    document["runtimeSettings"][0]["handlerSettings"]["protectedSettingsCertThumbprint"] = \
        thumbprint
    path.write_text(json.dumps(document))
    enable = agent.run(ext_dir, "enable", 1)
    status = agent.status(ext_dir, 1)
    assert status is not None, enable.output
    assert status["code"] == CERTIFICATE_NOT_FOUND, \
        f"code {status['code']}: {status['formattedMessage']['message'][:200]}"
