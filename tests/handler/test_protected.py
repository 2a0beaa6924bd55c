"""protectedSettings decryption against envelopes made by `openssl cms`, as the fabric does."""
from __future__ import annotations

import base64
import subprocess

import pytest

from devtools.fabric import CIPHERS, TenantCertificate
from handler import errors
from handler.protected import decrypt_protected_settings, parse_envelope

SECRET = {"storageSasToken": "?sv=2024&sig=VERYSECRETSIG", "nested": {"password": "hunter22"}}


@pytest.mark.parametrize("cipher", CIPHERS)
def test_each_fabric_cipher_decrypts_to_the_original_object(certificate, cipher):
    b64 = certificate.encrypt(SECRET, cipher)
    lib_dir = certificate.crt.parent
    assert decrypt_protected_settings(b64, certificate.thumbprint.lower(), lib_dir) == SECRET


@pytest.mark.parametrize("cipher,oid", [("des3", "1.2.840.113549.3.7"),
                                        ("aes128", "2.16.840.1.101.3.4.1.2"),
                                        ("aes256", "2.16.840.1.101.3.4.1.42")])
def test_envelope_names_the_cipher_openssl_used(certificate, cipher, oid):
    envelope = parse_envelope(base64.b64decode(certificate.encrypt({"a": 1}, cipher)))
    assert envelope.cipher_oid == oid, f"{cipher} parsed as {envelope.cipher_oid}"


def test_a_second_certificate_cannot_open_the_envelope(certificate, tmp_path):
    other = TenantCertificate.create(tmp_path, "other-tenant")
    b64 = other.encrypt(SECRET, "aes256")
    # Put the first certificate's files under the other's thumbprint: same name, wrong key.
    (tmp_path / f"{other.thumbprint}.crt").write_bytes(certificate.crt.read_bytes())
    (tmp_path / f"{other.thumbprint}.prv").write_bytes(certificate.prv.read_bytes())
    with pytest.raises(errors.WrongCertificateError) as caught:
        decrypt_protected_settings(b64, other.thumbprint, tmp_path)
    assert "VERYSECRETSIG" not in str(caught.value)


def test_a_private_key_that_is_not_rsa_is_the_wrong_certificate(certificate, tmp_path):
    """The right .crt beside an EC .prv (no RSA decrypt): a coded error, not an internal one."""
    (tmp_path / certificate.crt.name).write_bytes(certificate.crt.read_bytes())
    subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-out", str(tmp_path / certificate.prv.name)],
                   check=True, capture_output=True, timeout=30)
    b64 = certificate.encrypt(SECRET, "aes256")
    with pytest.raises(errors.WrongCertificateError) as caught:
        decrypt_protected_settings(b64, certificate.thumbprint, tmp_path)
    assert "not an RSA key" in str(caught.value), caught.value


@pytest.mark.parametrize("shape", ["truncated", "nested-indefinite", "nested-definite",
                                   "nested-octets", "huge-length"])
def test_malformed_envelopes_get_the_envelope_code(certificate, shape):
    """Whatever the bytes, a bad envelope is code 23 with a message, never an internal error."""
    good = base64.b64decode(certificate.encrypt(SECRET, "aes256"))
    blob = {
        "truncated": good[: len(good) // 2],
        "nested-indefinite": b"\x30\x80" * 50_000,
        "nested-definite": _nested_definite(20_000),
        "nested-octets": b"\x24\x80" * 50_000,
        "huge-length": b"\x30\x84\xff\xff\xff\xff" + good,
    }[shape]
    with pytest.raises(errors.EnvelopeError) as caught:
        decrypt_protected_settings(base64.b64encode(blob).decode(), certificate.thumbprint,
                                   certificate.crt.parent)
    assert "CMS" in str(caught.value), caught.value


def _nested_definite(depth: int) -> bytes:
    node = b"\x05\x00"
    for _ in range(depth):
        node = b"\x30" + _der_length(len(node)) + node
    return node


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw
