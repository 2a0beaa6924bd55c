"""Hunt: a SAS signature whose key is percent-encoded (`%73ig=`, which every URL parser, the
storage service's included, reads as `sig=`) is not recognised by the redactor's patterns: a
public statusBlobUri or storagePath written that way keeps its signature in any message."""
from __future__ import annotations

import pytest

from plumbing.redact import Redactor

SIGNATURE = "EncodedKeySig0123456789abcdefXYZ"


@pytest.mark.parametrize("text", [
    f"https://127.0.0.1:10000/acct/c/b?sv=2022-11-02&sr=b&%73ig={SIGNATURE}",
    f"https://127.0.0.1:10000/acct/c/b%3Fsv%3D2022-11-02%26%73ig%3D{SIGNATURE}",
    f"https://127.0.0.1:10000/acct/c/b?sv=2022-11-02&%53%49%47={SIGNATURE}",
], ids=["query", "percent-encoded-url", "all-encoded-upper"])
def test_a_signature_with_a_percent_encoded_key_is_redacted(text):
    shown = Redactor().redact(f"status blob {text} refused: HTTP 403")
    assert SIGNATURE not in shown, f"the signature is shown: {shown}"
