"""Capture file names: the ring's numbered files, a new name instead of overwriting, and
tcpdump's -C/-G/-W rotation (the CLI)."""
from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from typing import Optional

from capture_engine.errors import LocalFileError

RING_DIGITS = 5
MAX_GENERATIONS = 1000
_SEQ = re.compile(r"_(\d+)$")


def ring_suffix(seq: int) -> str:
    """`_00001`: at least five digits, as many as the number needs (`_100000`), never wrapping,
    so a ring that runs for weeks never reuses a file or blob name."""
    return f"_{seq:0{RING_DIGITS}d}"


def ring_path(base: str, seq: int) -> str:
    stem, ext = os.path.splitext(base)
    return f"{stem}{ring_suffix(seq)}{ext or '.cap'}"


def ring_seq(path: str) -> Optional[int]:
    """The rotation number of a ring file (None for a classic file)."""
    found = _SEQ.search(os.path.splitext(os.path.basename(path))[0])
    return int(found.group(1)) if found else None


def generation_path(path: str, generation: int) -> str:
    if generation <= 1:
        return path
    stem, ext = os.path.splitext(path)
    return f"{stem}~{generation}{ext}"


def _pattern(base: str, ring: bool, any_generation: bool) -> "re.Pattern[str]":
    stem, ext = os.path.splitext(os.path.basename(base))
    ext = (ext or ".cap") if ring else ext
    generation = r"(?:~(\d+))?" if any_generation else r"()"
    seq = r"_(\d+)" if ring else r"()"
    return re.compile(re.escape(stem) + generation + seq + re.escape(ext))


def _listing(folder: str) -> list[str]:
    try:
        return os.listdir(folder or ".")
    except FileNotFoundError:
        return []


def files_of(base: str, ring: bool) -> list[str]:
    """The file named `base`, or the ring files of base name `base` (this generation only:
    `x_00001.cap`, not `x~2_00001.cap`), oldest first."""
    if not ring:
        return [base] if os.path.lexists(base) else []
    folder, pattern = os.path.dirname(base), _pattern(base, ring, False)
    found: list[tuple[int, str]] = []
    for name in _listing(folder):
        match = pattern.fullmatch(name)
        if match:
            found.append((int(match.group(2)), os.path.join(folder, name)))
    return [path for _, path in sorted(found)]


def _taken(candidate: str, ring: bool) -> bool:
    if not ring:
        return os.path.lexists(candidate)
    pattern = _pattern(candidate, ring, False)
    return any(pattern.fullmatch(name) for name in _listing(os.path.dirname(candidate)))


def free_base(base: str, ring: bool) -> str:
    """`base`, or the first of `<stem>~2.cap`, `<stem>~3.cap`... (a ring: `<stem>~2_00001.cap`)
    that no existing file uses: a capture kept after a failed upload is never overwritten."""
    for generation in range(1, MAX_GENERATIONS + 1):
        candidate = generation_path(base, generation)
        if not _taken(candidate, ring):
            return candidate
    raise LocalFileError(f"{base} and {MAX_GENERATIONS - 1} more names like it already exist: "
                         "delete old captures (action=delete) or choose another file name")


@dataclass(frozen=True)
class Rotation:
    """tcpdump's -C/-G/-W rotation: when the next file starts, and its name.

    A new file starts before a record once the current one is larger than `file_bytes`
    (-C, so a file ends just past it), and before the first record at least `seconds` (-G)
    after the current interval began (tcpdump's whole-second time(3)); never without a record.
    """

    pattern: str            # -w; with -G an strftime(3) pattern
    file_bytes: int = 0     # -C x 1,000,000; 0 = no size rotation
    seconds: int = 0        # -G; 0 = no time rotation
    file_count: int = 0     # -W; 0 = none
    max_total_bytes: Optional[int] = None  # --max-bytes: all files together

    @property
    def digits(self) -> int:
        """tcpdump's getWflagChars: the digits of W - 1, none without -W (or -W 1)."""
        return len(str(self.file_count - 1)) if self.file_count > 1 else 0

    def name(self, interval_start: int, count: int = 0) -> str:
        """tcpdump's MakeFilename: `file`, `file1`, `file2`... with -C; with -C -W, `file0`
        upward with W - 1's digits; with -G the pattern through strftime at the interval's
        start (-G alone: one name per interval, no number)."""
        base = time.strftime(self.pattern, time.localtime(interval_start)) if self.seconds \
            else self.pattern
        digits = self.digits if self.file_bytes else 0
        if count == 0 and digits == 0:
            return base
        return f"{base}{count:0{digits}d}"

    def wrap(self, count: int) -> int:
        """The -C number after `count`: back to 0 at W (-W makes a ring of W names)."""
        count += 1
        return 0 if self.file_count and count >= self.file_count else count

    def ends_at(self, rotations: int) -> bool:
        """-G with -W and without -C: tcpdump exits at the W-th time rotation (W files)."""
        return bool(self.seconds and self.file_count and not self.file_bytes
                    and rotations >= self.file_count)
