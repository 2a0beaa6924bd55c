"""storageLocation and storageSasToken: where a capture goes, checked before anything runs."""
from __future__ import annotations

import os
import re
from typing import Any, Optional
from urllib.parse import urlsplit

from capture_engine.errors import InvalidFilePathError, InvalidStoragePathError, ProblemList
from capture_engine.fields import CONTROL, SPACE, Fields, blank, read_fields, shown
from plumbing.blobstore import BlobError, validate_blob_uri
from plumbing.redact import strip_query

STORAGE_FIELDS = ("storagePath", "filePath", "localPath")
STORAGE_READ_ONLY = ("storageId",)
MAX_URL_CHARS = 4096
MAX_PATH_CHARS = 1024
MAX_SAS_CHARS = 8192
WINDOWS_PATH = re.compile(r"[A-Za-z]:[\\/]")  # c:\temp\x.cap, d:/x.cap
# [user@]host or [user@][IPv6 literal], then an optional port: urlsplit takes "[::1]x" too.
NETLOC = re.compile(r"(?:[^@/\[\]]*@)?(?:\[[0-9A-Fa-f:.]+\]|[^@/\[\]:]+)(?::[0-9]*)?")
SAS_TEXT = re.compile(r"[!-~]+", re.ASCII)  # a URL query string: printable ASCII, no spaces
Locations = tuple[Optional[str], Optional[str], Optional[str]]


def blob_url(raw: Any, path: str, problems: ProblemList) -> Optional[str]:
    """An http(s) blob URL; messages show it without its query string (a SAS may be there)."""
    if not isinstance(raw, str):
        problems.add(path, f"must be an http(s) blob URL, got {shown(raw)}",
                     InvalidStoragePathError)
        return None
    text = raw.strip(SPACE)
    if len(text) > MAX_URL_CHARS or CONTROL.search(text):
        problems.add(path, f"not a blob URL: {shown(strip_query(text))} is longer than "
                     f"{MAX_URL_CHARS:,} characters or holds control characters",
                     InvalidStoragePathError)
        return None
    try:
        url = validate_blob_uri(text)
        parts = urlsplit(url)
        if not NETLOC.fullmatch(parts.netloc) or parts.port == 0:  # .port raises on x, 99999
            raise ValueError("malformed host or port")
        return url
    except BlobError as exc:
        problems.add(path, str(exc), InvalidStoragePathError)
    except ValueError as exc:  # urlsplit: "Invalid IPv6 URL", a bad port...
        problems.add(path, f"not a well-formed URL ({exc}): {shown(strip_query(text))}",
                     InvalidStoragePathError)
    return None


def local_file(raw: Any, path: str, root: str, problems: ProblemList) -> Optional[str]:
    """A `.cap` file under the capture root (a relative path is taken under it)."""
    if raw is None:
        return None
    if not isinstance(raw, str):
        problems.add(path, f"must be a string path, got {shown(raw)}", InvalidFilePathError)
        return None
    if len(raw) > MAX_PATH_CHARS or CONTROL.search(raw):
        problems.add(path, f"{shown(raw)} is longer than {MAX_PATH_CHARS:,} characters or "
                     "holds control characters (NUL, newline...)", InvalidFilePathError)
        return None
    if WINDOWS_PATH.match(raw) or "\\" in raw:
        problems.add(path, f"{shown(raw)} is a Windows path: on Linux the file must be under "
                     f"{root}/ (for example {root}/packetcapture.cap)", InvalidFilePathError)
        return None
    if not raw.lower().endswith(".cap"):
        problems.add(path, f"{shown(raw)} must end in .cap", InvalidFilePathError)
        return None
    base = os.path.realpath(root)
    full = os.path.realpath(os.path.join(base, raw))
    if ".." in raw.split("/") or not full.startswith(base + os.sep):
        problems.add(path, f"{shown(raw)} must be a file under {root}/", InvalidFilePathError)
        return None
    return full


def storage_location(fields: Fields, ring: bool, root: str, problems: ProblemList) -> Locations:
    """(storagePath, filePath, localPath) of the storageLocation object."""
    raw, where = fields.get("storageLocation"), fields.path("storageLocation")
    if raw is not None and not isinstance(raw, dict):
        problems.add(where, f"must be an object, got {shown(raw)}", InvalidFilePathError)
        return None, None, None
    location = read_fields(raw or {}, STORAGE_FIELDS, where + ".", problems, STORAGE_READ_ONLY)
    storage = location.get("storagePath")
    if storage is not None:
        storage = blob_url(storage, location.path("storagePath"), problems)
    file_path = local_file(location.get("filePath"), location.path("filePath"), root, problems)
    local = local_file(location.get("localPath"), location.path("localPath"), root, problems)
    if ring and file_path:
        problems.add(location.path("filePath"), "filePath cannot be used with "
                     "continuousCapture: give localPath instead", InvalidFilePathError)
    if not ring and local:
        problems.add(location.path("localPath"), "localPath is only for continuousCapture: "
                     "give filePath instead", InvalidFilePathError)
    if not any(name in location for name in STORAGE_FIELDS):
        problems.add(where, "give storagePath, filePath (or localPath with continuousCapture)",
                     InvalidFilePathError)
    return storage, file_path, local


def sas_token(raw: object, problems: ProblemList) -> Optional[str]:
    """protectedSettings.storageSasToken: a query string, or absent. Never shown back."""
    if raw is None or blank(raw):
        return None
    if not isinstance(raw, str):
        problems.add("storageSasToken", f"must be a string (the SAS query string), got a "
                     f"value of type {type(raw).__name__}", InvalidStoragePathError)
        return None
    token = raw.strip(SPACE).lstrip("?")
    if len(token) > MAX_SAS_CHARS or not SAS_TEXT.fullmatch(token):
        problems.add("storageSasToken", f"is not a SAS query string: copy it exactly "
                     f"(printable ASCII, no spaces, at most {MAX_SAS_CHARS:,} characters)",
                     InvalidStoragePathError)
        return None
    return token
