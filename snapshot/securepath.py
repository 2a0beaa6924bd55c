"""Is a root-owned file safe to trust? Only if no other user can swap it along its path."""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass

MAX_SYMLINKS = 40  # as the kernel's ELOOP limit


class UntrustedPath(Exception):
    """Why a path cannot be trusted; `ownership` tells ownership apart from permission bits."""

    def __init__(self, message: str, *, ownership: bool = False, missing: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.ownership = ownership
        self.missing = missing


@dataclass(frozen=True)
class TrustedFile:
    """The resolved path of a file every directory (and symlink) on the way to is root's."""

    path: str
    st: os.stat_result


def resolve_trusted(path: str) -> TrustedFile:
    """Walk `path` from `/` one component at a time (lstat, no following behind our back).

    Every directory passed must be root-owned and not writable by group/other unless sticky
    (in a sticky directory nobody but root may rename root's entries); every symlink must be
    root-owned, since in a sticky directory its owner may still repoint it. A non-root user
    able to write any of them could swap the file between our check and its use.
    """
    if not os.path.isabs(path):
        raise UntrustedPath(f"{path} is not an absolute path", missing=True)
    pending = [p for p in path.split("/") if p]
    current, hops = "/", 0
    _check_directory(current, os.lstat(current))
    while pending:
        name = pending.pop(0)
        if name == ".":
            continue
        if name == "..":
            current = os.path.dirname(current) or "/"
            continue
        candidate = os.path.join(current, name)
        try:
            st = os.lstat(candidate)
        except FileNotFoundError:
            raise UntrustedPath(f"{candidate} does not exist", missing=True) from None
        except NotADirectoryError:
            raise UntrustedPath(f"{current} is not a directory", missing=True) from None
        if stat.S_ISLNK(st.st_mode):
            hops += 1
            if st.st_uid != 0 or hops > MAX_SYMLINKS:
                raise UntrustedPath(f"symlink {candidate} is owned by uid {st.st_uid}, not root"
                                    if st.st_uid else f"{path}: too many symlinks",
                                    ownership=bool(st.st_uid))
            target = os.readlink(candidate)
            current = "/" if target.startswith("/") else current
            pending = [p for p in target.split("/") if p] + pending
            continue
        if pending:
            _check_directory(candidate, st)
        current = candidate
    if current == "/":
        raise UntrustedPath(f"{path} names a directory, not a file", missing=True)
    return TrustedFile(current, os.lstat(current))  # every directory above is root's alone


def _check_directory(path: str, st: os.stat_result) -> None:
    if not stat.S_ISDIR(st.st_mode):
        raise UntrustedPath(f"{path} is not a directory", missing=True)
    if st.st_uid != 0:
        raise UntrustedPath(f"directory {path} is owned by uid {st.st_uid}, not root: its owner "
                            "could replace what it holds", ownership=True)
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not st.st_mode & stat.S_ISVTX:
        raise UntrustedPath(f"directory {path} has mode {stat.S_IMODE(st.st_mode):o}: writable "
                            "by group/other without the sticky bit, so others could replace "
                            "what it holds")


def trusted_root_file(path: str) -> TrustedFile:
    """resolve_trusted, and the file itself a regular file of root's only root may write."""
    trusted = resolve_trusted(path)
    st = trusted.st
    if not stat.S_ISREG(st.st_mode):
        raise UntrustedPath(f"{path} is not a regular file", missing=True)
    if st.st_uid != 0:
        raise UntrustedPath(f"{path} is owned by uid {st.st_uid}, not root", ownership=True)
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UntrustedPath(f"{path} has mode {stat.S_IMODE(st.st_mode):o}: writable by "
                            "group/other")
    return trusted
