"""Secret redaction applied to every log line, status message and error text."""
from __future__ import annotations

import re
import threading
from typing import Any, Iterable

REDACTED = "REDACTED"

# Query parameters of a SAS URI or connection string whose value is a secret.
_SECRET_KEYS = ("sig", "signature", "AccountKey", "SharedAccessKey", "SharedAccessSignature",
                "password", "passwd", "pwd", "token", "access_token", "client_secret",
                "credString")


def _any_spelling(word: str) -> str:
    """`word` with each character as itself or percent-encoded, once or twice (%73, %2573):
    every URL parser, the storage service's included, reads `%73ig=` as `sig=`."""
    parts = []
    for char in word:
        codes = {f"{ord(char.lower()):02x}", f"{ord(char.upper()):02x}"}
        spellings = [re.escape(char)] + [f"%(?:25)?{code}" for code in sorted(codes)]
        parts.append(f"(?:{'|'.join(spellings)})")
    return "".join(parts)


_SECRET_PARAMS = re.compile(
    r"(?i)(?P<key>(?:(?<![a-z])|(?<=%3f)|(?<=%253f))(?:"
    + "|".join(_any_spelling(key) for key in _SECRET_KEYS)
    + r")[\"']?(?:\s*[=:]|%3D|%253D)\s*[\"']?)"
    r"(?P<value>[^&\s\"'<>;,]+)"
)
_URL_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@")
_BEARER = re.compile(r"(?i)\b(Bearer|SharedKey|Basic)\s+[A-Za-z0-9+/=._~:-]{8,}")

# Secrets shorter than this are not registered: redacting "1" or "ab" would shred logs.
MIN_SECRET_LENGTH = 4


class Redactor:
    """Removes SAS signatures, credentials and registered secret values from text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._secrets: set[str] = set()
        self.add(*secrets)

    def add(self, *secrets: str) -> None:
        with self._lock:
            for secret in secrets:
                if isinstance(secret, str) and len(secret) >= MIN_SECRET_LENGTH:
                    self._secrets.add(secret)

    def add_values(self, obj: Any) -> None:
        """Register every string leaf of a decrypted settings object as a secret."""
        self.add(*_string_leaves(obj))

    def __call__(self, text: str) -> str:
        return self.redact(text)

    def redact(self, text: str) -> str:
        if not text:
            return text
        with self._lock:
            secrets = sorted(self._secrets, key=len, reverse=True)
        for secret in secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return redact_patterns(text)


def redact_patterns(text: str) -> str:
    """Redact what is recognisable as a credential without knowing its value."""
    text = _SECRET_PARAMS.sub(lambda m: m.group("key") + REDACTED, text)
    text = _URL_USERINFO.sub(lambda m: m.group("scheme") + REDACTED + "@", text)
    return _BEARER.sub(lambda m: m.group(1) + " " + REDACTED, text)


def strip_query(uri: str) -> str:
    """A blob URI without its SAS query string, safe to show to a user."""
    return uri.split("?", 1)[0]


# A number is registered as a secret when its text is at least this long ("42" is not a
# secret; an account number or PIN-like token may be) and at most the second (a 5,000-digit
# number is nobody's secret, and converting it to text is refused by Python 3.11).
MIN_NUMERIC_SECRET, MAX_NUMERIC_DIGITS = 8, 64


def _string_leaves(obj: Any) -> Iterable[str]:
    """Every string (and long-enough number) in obj, at any depth, without recursion: the
    object came from a caller and may be nested as deep as the JSON parser allowed."""
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        elif isinstance(item, int) and not isinstance(item, bool):
            if item.bit_length() <= MAX_NUMERIC_DIGITS * 3.33:
                text = str(item)
                if len(text.lstrip("-")) >= MIN_NUMERIC_SECRET:
                    yield text
        elif isinstance(item, float) and len(repr(item)) >= MIN_NUMERIC_SECRET:
            yield repr(item)
