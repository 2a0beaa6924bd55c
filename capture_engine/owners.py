"""Which capture wrote which files: a claim per file name, recorded before the file exists.

Captures may share a filePath (the service lists two writing one); a new start then writes
`<stem>~2.cap`. The claim says whose that name is, so `action: delete` removes only the files
of its own capture. Claims live in `<capture root>/.owners/`, one small JSON file per name,
written (and fsynced) before the file is created: a worker killed right after creating its
file, or mid-ring, leaves a claim for it, and a restarted handler finds it on disk. Choosing
a free name, claiming it and creating the file happen under one lock (flock, released by the
kernel if the process dies), so two starts never take the same name.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from dataclasses import dataclass
from typing import Iterator, Optional

from capture_engine.naming import files_of
from plumbing.files import locked, write_atomic

OWNERS_DIR = ".owners"
LOCK_FILE = "lock"


@dataclass(frozen=True)
class Claim:
    """A file name (a classic file, or a ring's base name) and the capture that took it."""

    name: str
    path: str
    ring: bool
    claimed_ns: int = 0

    def files(self) -> list[str]:
        """The files on disk under this name, oldest first."""
        return files_of(self.path, self.ring)


class Owners:
    """The claims of one capture root."""

    def __init__(self, capture_root: str) -> None:
        self.folder = os.path.join(capture_root, OWNERS_DIR)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        os.makedirs(self.folder, mode=0o750, exist_ok=True)
        with locked(os.path.join(self.folder, LOCK_FILE), mode=0o640):
            yield

    def _record(self, path: str) -> str:
        key = hashlib.sha256(os.path.abspath(path).encode("utf-8", "surrogateescape"))
        return os.path.join(self.folder, key.hexdigest()[:40] + ".json")

    def claim(self, name: str, path: str, ring: bool) -> Claim:
        """Record (durably) that capture `name` writes under `path`; call it under lock(). A
        claim of a name with no file left (its capture deleted by hand) is replaced."""
        claim = Claim(name, os.path.abspath(path), ring, time.time_ns())
        write_atomic(self._record(path), json.dumps(
            {"name": claim.name, "path": claim.path, "ring": claim.ring,
             "claimedNs": claim.claimed_ns}).encode("utf-8"), mode=0o640)
        return claim

    def claims(self, name: str) -> list[Claim]:
        """Every claim of capture `name`, oldest first."""
        found = [c for c in (self._read(e) for e in _listing(self.folder)) if c and
                 c.name == name]
        return sorted(found, key=lambda c: c.claimed_ns)

    def release(self, claim: Claim) -> None:
        """Forget a claim once its files are gone (a later start may take the name again);
        call it under lock(). A claim taken again since, by another start, stays."""
        record = self._record(claim.path)
        current = self._read(os.path.basename(record))
        if current is not None and (current.name, current.claimed_ns) != (claim.name,
                                                                          claim.claimed_ns):
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(record)

    def _read(self, entry: str) -> Optional[Claim]:
        if not entry.endswith(".json"):
            return None
        try:
            with open(os.path.join(self.folder, entry), encoding="utf-8") as source:
                data = json.load(source)
            return Claim(str(data["name"]), str(data["path"]), bool(data["ring"]),
                         int(data.get("claimedNs", 0)))
        except (OSError, ValueError, KeyError, TypeError):
            return None  # not a claim (records are renamed into place whole)


def _listing(folder: str) -> list[str]:
    try:
        return sorted(os.listdir(folder))
    except FileNotFoundError:
        return []

