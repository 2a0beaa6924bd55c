"""Two keys that ARM reads as one property (they differ only in case, or repeat): which one
wins is not ours to guess, so the settings are refused naming both, in public and protected
settings alike."""
from __future__ import annotations

import pytest

from handler import errors
from handler.protected import decrypt_protected_settings
from handler.settings_file import read_settings

DUPLICATES = [
    '{"packetCapture": {"name": "a"}, "PacketCapture": {"name": "b"}}',
    '{"packetCapture": {"name": "a", "NAME": "b"}}',
    '{"commandToExecute": "x", "commandToExecute": "y"}',
]


def settings_file(folder, public_json: str) -> None:
    (folder / "1.settings").write_text(
        '{"runtimeSettings": [{"handlerSettings": {"publicSettings": ' + public_json + "}}]}")


@pytest.mark.parametrize("public", DUPLICATES)
def test_public_keys_that_are_one_property_to_arm_are_refused(tmp_path, public):
    settings_file(tmp_path, public)
    with pytest.raises(errors.SettingsFileError) as refused:
        read_settings(tmp_path, 1)
    assert "differ only in case" in refused.value.message, refused.value.message


def test_distinct_keys_are_read_as_before(tmp_path):
    settings_file(tmp_path, '{"packetCapture": {"name": "a", "filters": []}, "x": 1}')
    assert read_settings(tmp_path, 1).public == {"packetCapture": {"name": "a", "filters": []},
                                                 "x": 1}


def test_protected_keys_that_are_one_property_to_arm_are_refused(certificate):
    plaintext = b'{"storageSasToken": "sv=1&sig=SECRETSIG1", "StorageSasToken": "sv=2"}'
    b64 = certificate.encrypt_bytes(plaintext, "aes256")
    with pytest.raises(errors.ProtectedSettingsContentError) as refused:
        decrypt_protected_settings(b64, certificate.thumbprint, certificate.crt.parent)
    message = refused.value.message
    assert "differ only in case" in message and "SECRETSIG1" not in message, message
