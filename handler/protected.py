"""Decrypts protectedSettings: CMS EnvelopedData (RSA key transport; 3DES or AES-CBC content)."""
from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from handler import der
from handler.errors import (
    CertificateNotFoundError,
    EnvelopeError,
    ProtectedSettingsContentError,
    ProtectedSettingsEncodingError,
    UnsupportedCipherError,
    WrongCertificateError,
)
from handler.settings_file import KeyClashes

if TYPE_CHECKING:  # cryptography is imported only when there is something to decrypt
    from cryptography.hazmat.primitives.asymmetric.padding import OAEP, PKCS1v15
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
    from cryptography.hazmat.primitives.ciphers import BlockCipherAlgorithm
    from cryptography.x509 import Certificate

THUMBPRINT = re.compile(r"[0-9A-F]{40}")
OID_ENVELOPED_DATA = "1.2.840.113549.1.7.3"
OID_RSA_ENCRYPTION = "1.2.840.113549.1.1.1"
OID_RSAES_OAEP = "1.2.840.113549.1.1.7"
CONTENT_CIPHERS = {
    "1.2.840.113549.3.7": ("DES-EDE3-CBC", 24),
    "2.16.840.1.101.3.4.1.2": ("AES-128-CBC", 16),
    "2.16.840.1.101.3.4.1.22": ("AES-192-CBC", 24),
    "2.16.840.1.101.3.4.1.42": ("AES-256-CBC", 32),
}


@dataclass(frozen=True)
class Envelope:
    """The parts of an EnvelopedData that decryption needs."""

    issuer_der: bytes
    serial: int
    key_algorithm: str
    encrypted_key: bytes
    cipher_oid: str
    iv: bytes
    ciphertext: bytes


def decrypt_protected_settings(b64: str, thumbprint: str, lib_dir: Path) -> dict[str, Any]:
    """Decrypt and parse protectedSettings; the plaintext stays in memory only."""
    try:
        blob = base64.b64decode("".join(b64.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ProtectedSettingsEncodingError(
            f"protectedSettings is not valid base64: {exc}") from None
    if not blob:
        raise ProtectedSettingsEncodingError("protectedSettings decodes to nothing")
    envelope = parse_envelope(blob)
    certificate, key = load_key_pair(thumbprint, lib_dir)
    plaintext = decrypt_envelope(envelope, certificate, key, thumbprint)
    keys = KeyClashes()
    try:
        value = json.loads(plaintext.decode("utf-8"), object_pairs_hook=keys)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ProtectedSettingsContentError(
            "protectedSettings decrypted, but the plaintext is not JSON") from None
    if keys.found:
        raise ProtectedSettingsContentError(f"protectedSettings: {keys.describe()}")
    if not isinstance(value, dict):
        raise ProtectedSettingsContentError(
            f"protectedSettings must be a JSON object, found {type(value).__name__}")
    return value


def parse_envelope(blob: bytes) -> Envelope:
    try:
        return _parse_envelope(blob)
    except (ValueError, IndexError) as exc:  # DerError, or a structure with parts missing
        reason = str(exc) if isinstance(exc, der.DerError) else "a required part is missing"
        raise EnvelopeError(f"protectedSettings is not a well-formed CMS envelope: {reason}") \
            from None


def _parse_envelope(blob: bytes) -> Envelope:
    content_info, _ = der.read_one(blob)
    content_type, explicit = der.expect(content_info, 0x30, "ContentInfo").children()[:2]
    if der.decode_oid(content_type) != OID_ENVELOPED_DATA:
        raise der.DerError(f"content type {der.decode_oid(content_type)} is not envelopedData")
    fields = der.expect(explicit, 0xA0, "content").children()[0].children()
    fields = [f for f in fields if f.tag != 0xA0]  # drop optional originatorInfo
    recipients, encrypted_content = fields[1], fields[2]
    recipient = der.expect(recipients, 0x31, "recipientInfos").children()[0]
    rid, key_alg, enc_key = der.expect(recipient, 0x30, "KeyTransRecipientInfo").children()[1:4]
    if rid.tag != 0x30:
        raise der.DerError("recipient is identified by subject key id, not issuer and serial")
    issuer, serial = rid.children()[:2]
    eci = der.expect(encrypted_content, 0x30, "EncryptedContentInfo").children()
    algorithm = der.expect(eci[1], 0x30, "contentEncryptionAlgorithm").children()
    if len(eci) < 3 or eci[2].tag not in (0x80, 0xA0):
        raise der.DerError("encryptedContent is missing")
    iv = algorithm[1].octets() if len(algorithm) > 1 and algorithm[1].tag == 0x04 else b""
    return Envelope(
        issuer_der=bytes([issuer.tag]) + _length(len(issuer.value)) + issuer.value,
        serial=der.decode_int(serial),
        key_algorithm=der.decode_oid(key_alg.children()[0]),
        encrypted_key=der.expect(enc_key, 0x04, "encryptedKey").octets(),
        cipher_oid=der.decode_oid(algorithm[0]),
        iv=iv,
        ciphertext=der.Node(0x24 if eci[2].tag == 0xA0 else 0x04, eci[2].value).octets(),
    )


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def load_key_pair(thumbprint: str, lib_dir: Path) -> tuple[Certificate, RSAPrivateKey]:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    name = (thumbprint or "").strip().upper()
    if not THUMBPRINT.fullmatch(name):  # a SHA-1: never a path of any other shape
        shown = name[:48] + ("..." if len(name) > 48 else "")
        raise CertificateNotFoundError(f"protectedSettingsCertThumbprint {shown!r} is not a "
                                       "certificate thumbprint (40 hexadecimal digits)")
    crt, prv = lib_dir / f"{name}.crt", lib_dir / f"{name}.prv"
    missing = [p.name for p in (crt, prv) if not p.is_file()]
    if not name or missing:
        raise CertificateNotFoundError(
            f"no certificate for thumbprint {name or '(empty)'}: missing "
            f"{', '.join(missing) or 'thumbprint'} in {lib_dir}")
    try:
        certificate = x509.load_pem_x509_certificate(_pem_block(crt.read_bytes(), b"CERTIFICATE"))
        key = load_pem_private_key(_pem_block(prv.read_bytes(), b"PRIVATE KEY"), password=None)
    except (ValueError, TypeError) as exc:
        raise CertificateNotFoundError(f"certificate files for {name} are unreadable: "
                                       f"{type(exc).__name__}") from None
    if not isinstance(key, RSAPrivateKey):  # CMS key transport decrypts with RSA only
        raise WrongCertificateError(f"the private key of {name} is not an RSA key "
                                    f"({type(key).__name__}): it cannot decrypt the content key")
    return certificate, key


def _pem_block(data: bytes, label: bytes) -> bytes:
    """Cut the PEM block out of a file that may start with 'Bag Attributes' lines."""
    start = data.find(b"-----BEGIN ")
    while start != -1 and label not in data[start:data.find(b"\n", start)]:
        start = data.find(b"-----BEGIN ", start + 1)
    return data[start:] if start != -1 else data


def decrypt_envelope(envelope: Envelope, certificate: Certificate, key: RSAPrivateKey,
                     thumbprint: str) -> bytes:
    from cryptography.hazmat.primitives import hashes, padding
    from cryptography.hazmat.primitives.asymmetric import padding as asym
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    if envelope.cipher_oid not in CONTENT_CIPHERS:
        raise UnsupportedCipherError(f"content cipher {envelope.cipher_oid} is not supported "
                                     f"(supported: DES-EDE3-CBC, AES-128/192/256-CBC)")
    name, key_size = CONTENT_CIPHERS[envelope.cipher_oid]
    if (envelope.serial != certificate.serial_number
            or envelope.issuer_der != certificate.issuer.public_bytes()):
        raise WrongCertificateError(
            f"protectedSettings were encrypted to another certificate (serial "
            f"{envelope.serial:x}), not to {thumbprint.upper()} (serial "
            f"{certificate.serial_number:x})")
    key_padding: Union[PKCS1v15, OAEP]
    if envelope.key_algorithm == OID_RSA_ENCRYPTION:
        key_padding = asym.PKCS1v15()
    elif envelope.key_algorithm == OID_RSAES_OAEP:
        key_padding = asym.OAEP(mgf=asym.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
    else:
        raise UnsupportedCipherError(f"key transport {envelope.key_algorithm} is not supported")
    try:
        content_key = key.decrypt(envelope.encrypted_key, key_padding)
    except ValueError:
        raise WrongCertificateError(f"the private key of {thumbprint.upper()} cannot decrypt "
                                    f"the content key") from None
    if len(content_key) != key_size:
        raise WrongCertificateError(f"decrypted content key has {len(content_key)} bytes, "
                                    f"{name} needs {key_size}")
    algorithm: BlockCipherAlgorithm
    if name.startswith("DES"):
        from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES

        algorithm, block = TripleDES(content_key), 64
    else:
        algorithm, block = algorithms.AES(content_key), 128
    if len(envelope.iv) * 8 != block or len(envelope.ciphertext) % (block // 8):
        raise EnvelopeError(f"{name} envelope has a bad IV or a truncated ciphertext")
    decryptor = Cipher(algorithm, modes.CBC(envelope.iv)).decryptor()
    padded = decryptor.update(envelope.ciphertext) + decryptor.finalize()
    unpadder = padding.PKCS7(block).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        raise WrongCertificateError("content did not decrypt cleanly (bad padding): wrong key "
                                    "or corrupted envelope") from None
