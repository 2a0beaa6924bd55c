"""Hunt: decrypted protected values in odd shapes reach the status, logs and state on disk."""
from __future__ import annotations

import re
from pathlib import Path
from typing import List

import pytest

from tests.snapshot.conftest import settings_dicts

pytestmark = pytest.mark.root

DISK = "http://127.0.0.1:9/acct/vhds/osdisk.vhd?sv=2022-11-02&sr=b&sp=rw&sig=AAAA"
# A protected value that is not a blob URL (a token pasted into the wrong field). Its text must
# never be shown: every window of 16 characters of it is searched for.
LONG = "not-a-url-" + "".join(f"{i:03d}Zx" for i in range(60))  # 310 characters
QUOTED = "not-a-url-Pr0tectedXq7\\Passw0rdZk9'wiTh\"Qv3Jm8Tt2"  # a backslash and both quotes


def pieces(secret: str, width: int = 16) -> List[str]:
    """Every readable piece of the secret: its runs of letters and digits (an escaped quote or
    backslash still shows the rest), cut into windows of `width` characters."""
    found = []
    for run in re.findall(r"[A-Za-z0-9]{8,}", secret[len("not-a-url-"):]):
        found += [run[i:i + width] for i in range(0, max(1, len(run) - width + 1), 4)]
    return found


def hits(root: Path, needles: List[str]) -> List[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            where = f"{path.parent.name}/{path.name}"
            found += [f"{where}: ...{n}..." for n in needles if n.encode() in data]
    return found


@pytest.mark.parametrize("secret", [LONG, QUOTED], ids=["over-200-chars", "backslash-quotes"])
def test_a_malformed_protected_blob_uri_is_never_shown(agent, ext_dir, secret):
    """validate_blob_uri quotes the value as `repr(value[:200])`; the redactor knows only the
    whole value, so the first 200 characters, or the repr-escaped text, are not recognised."""
    public, protected = settings_dicts([DISK])
    protected["logsBlobUri"] = secret
    agent.write_settings(ext_dir, 1, public, protected)
    enable = agent.run(ext_dir, "enable", 1)
    status = agent.status(ext_dir, 1)
    assert status is not None and status["status"] == "error" and status["code"] == 11, status
    needles = pieces(secret)
    leaked = [hit for where in (ext_dir / "state", ext_dir / "status", agent.log_root)
              for hit in hits(where, needles)]
    leaked += [f"enable output: ...{n}..." for n in needles if n in enable.output]
    files = sorted({hit.split(": ...")[0] for hit in leaked})
    assert not leaked, f"a decrypted protected value is shown in {files}: {leaked[:2]}"


def test_a_percent_encoded_sas_in_a_public_status_uri_is_never_shown(agent, ext_dir, azurite):
    """statusBlobUri may come in public settings (the redactor does not know it); a SAS URL
    percent-encoded whole (`%3F...%26sig%3D...`, as it is when passed through another URL)
    stays in the path, storage refuses it, and the error message quotes it: the `sig=` pattern
    does not match `sig%3D`."""
    signature = "PctEncodedSig0123456789abcdefXYZ"
    sas = azurite.blob_sas_uri("pctstatus", "s.json").split("?")[0]
    encoded = sas + "%3Fsv%3D2022-11-02%26sr%3Db%26sp%3Drw%26sig%3D" + signature
    public, protected = settings_dicts([DISK])
    public["statusBlobUri"] = encoded
    agent.write_settings(ext_dir, 1, public, protected)
    enable = agent.run(ext_dir, "enable", 1)
    status = agent.status(ext_dir, 1)
    assert status is not None and status["status"] == "error", status
    needles = [signature]
    leaked = [hit for where in (ext_dir / "state", ext_dir / "status", agent.log_root)
              for hit in hits(where, needles)]
    leaked += [f"enable output: ...{n}..." for n in needles if n in enable.output]
    assert not leaked, f"a SAS signature is shown: {leaked[:3]}"
