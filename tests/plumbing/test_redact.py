"""Redaction removes SAS signatures, credentials and registered secrets, and nothing else."""
from __future__ import annotations

import pytest

from plumbing.redact import REDACTED, Redactor, redact_patterns, strip_query

SAS = ("https://acct.blob.core.windows.net/c/b.vhd?sv=2024-11-04&sr=b&sp=rw"
       "&se=2026-12-01T00%3A00%3A00Z&sig=AbC%2Bdef%2F123%3D")


@pytest.mark.parametrize("text,secret", [
    (SAS, "AbC%2Bdef%2F123%3D"),
    ("DefaultEndpointsProtocol=https;AccountName=a;AccountKey=Zm9vYmFyYmF6==;", "Zm9vYmFyYmF6=="),
    ("postgres://backup:s3cr3tPass@127.0.0.1/db", "s3cr3tPass"),
    ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig", "eyJhbGciOiJIUzI1NiJ9"),
    ('{"credString": "dbpass123"}', "dbpass123"),
])
def test_known_credential_shapes_are_redacted(text, secret):
    cleaned = redact_patterns(text)
    assert secret not in cleaned, f"{secret!r} survived in {cleaned!r}"
    assert REDACTED in cleaned


def test_non_secret_query_parameters_survive():
    cleaned = redact_patterns(SAS)
    assert "sv=2024-11-04" in cleaned and "sp=rw" in cleaned, cleaned


def test_registered_secret_values_are_redacted_wherever_they_appear():
    redactor = Redactor()
    redactor.add_values({"objectStr": "eyJibG9iU0FTVXJpIjpbXX0=", "n": 5, "short": "ab",
                         "list": ["opaque-token-value"]})
    text = "decoded eyJibG9iU0FTVXJpIjpbXX0= and opaque-token-value; ab stays"
    cleaned = redactor(text)
    assert "eyJibG9iU0FTVXJpIjpbXX0=" not in cleaned and "opaque-token-value" not in cleaned
    assert "ab stays" in cleaned, "secrets shorter than 4 characters must not shred the text"


def test_strip_query_keeps_only_the_blob_address():
    assert strip_query(SAS) == "https://acct.blob.core.windows.net/c/b.vhd"


def test_percent_encoded_sas_parameters_are_redacted():
    from plumbing.redact import redact_patterns

    for text in ("https://a/b%3Fsig%3DSeCrEt1%26se%3D2", "https://a/b%3Fsv%3D1%26sig%3DSeCrEt1",
                 "https://a/b%253Fsig%253DSeCrEt1"):
        assert "SeCrEt1" not in redact_patterns(text), text
    assert redact_patterns("mysig=keep") == "mysig=keep", "only whole parameter names"
