"""The fabric's side of protected settings: a tenant certificate and `openssl cms` encryption."""
from __future__ import annotations

import base64
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

CIPHERS = ("des3", "aes128", "aes256")


@dataclass(frozen=True)
class TenantCertificate:
    """A throwaway certificate whose .crt/.prv sit in LibDir under its SHA-1 thumbprint."""

    thumbprint: str
    crt: Path
    prv: Path

    @classmethod
    def create(cls, lib_dir: Path, common_name: str = "tenant-cert") -> "TenantCertificate":
        lib_dir.mkdir(parents=True, exist_ok=True)
        work = lib_dir / f".{common_name}"
        work.mkdir(exist_ok=True)
        key, crt = work / "key.pem", work / "crt.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                        str(key), "-out", str(crt), "-days", "2", "-subj", f"/CN={common_name}"],
                       check=True, capture_output=True, timeout=60)
        fingerprint = subprocess.run(
            ["openssl", "x509", "-in", str(crt), "-noout", "-fingerprint", "-sha1"],
            check=True, capture_output=True, text=True, timeout=30).stdout
        thumbprint = fingerprint.split("=", 1)[1].strip().replace(":", "").upper()
        crt_path, prv_path = lib_dir / f"{thumbprint}.crt", lib_dir / f"{thumbprint}.prv"
        crt_path.write_bytes(crt.read_bytes())
        # The agent's .prv files carry a "Bag Attributes" preamble from the PKCS#12 export.
        prv_path.write_bytes(b"Bag Attributes\n    localKeyID: 01 00 00 00\n" + key.read_bytes())
        prv_path.chmod(0o600)
        return cls(thumbprint, crt_path, prv_path)

    def encrypt(self, protected: Mapping[str, Any], cipher: str = "des3") -> str:
        """base64(DER CMS EnvelopedData), exactly as the fabric builds protectedSettings."""
        return self.encrypt_bytes(json.dumps(protected).encode("utf-8"), cipher)

    def encrypt_bytes(self, plaintext: bytes, cipher: str = "des3") -> str:
        """The same envelope around any plaintext (for settings of a shape no caller sends)."""
        assert cipher in CIPHERS, f"cipher {cipher} not one the fabric uses"
        der = subprocess.run(
            ["openssl", "cms", "-encrypt", "-binary", f"-{cipher}", "-outform", "DER",
             str(self.crt)], input=plaintext, check=True, capture_output=True, timeout=30).stdout
        return base64.b64encode(der).decode("ascii")
