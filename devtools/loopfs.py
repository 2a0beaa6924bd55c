"""Small loop-mounted ext4/xfs filesystems for freeze tests and benchmarks (root only)."""
from __future__ import annotations

import fcntl
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List

MKFS = {"ext4": ["mkfs.ext4", "-q", "-F"], "xfs": ["mkfs.xfs", "-q", "-f"]}
# mkfs.xfs refuses < 300 MiB unless told it is a test filesystem.
MKFS_ENV = dict(os.environ, TEST_DEV="1", TEST_DIR="1", QA_CHECK_FS="1")
FITHAW = 0xC0045878


@dataclass(frozen=True)
class LoopFs:
    image: Path
    device: str
    mountpoint: str
    fstype: str


def _sh(argv: List[str], **kw) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=60,
                          **kw).stdout.strip()


class LoopFilesystems:
    """Creates loop filesystems under `root`; close() thaws, unmounts, detaches and deletes
    them all."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._made: List[List] = []

    def make(self, fstype: str = "ext4", size_mb: int = 64) -> LoopFs:
        index = len(self._made)
        image = self.root / f"fs{index}.{fstype}.img"
        with open(image, "wb") as stream:
            stream.truncate(size_mb * 1024 * 1024)
        _sh(MKFS[fstype] + [str(image)], env=MKFS_ENV)
        mountpoint = self.root / f"mnt{index}"
        mountpoint.mkdir()
        device = _sh(["losetup", "-f", "--show", str(image)])
        self._made.append([device, str(mountpoint), False, image])
        _sh(["mount", device, str(mountpoint)])
        self._made[-1][2] = True
        return LoopFs(image, device, str(mountpoint), fstype)

    def close(self) -> None:
        for device, mountpoint, mounted, image in reversed(self._made):
            thaw(mountpoint)
            if mounted and not _retry(["umount", mountpoint]):
                _retry(["umount", "-l", mountpoint], attempts=1)
            _retry(["losetup", "-d", device])
            # The images are most of what a test run leaves on disk. Unlinking is safe even
            # if a lazy unmount still holds one; rmdir refuses a mount point still in use.
            image.unlink(missing_ok=True)
            try:
                os.rmdir(mountpoint)
            except OSError:
                pass
        self._made = []

    def __enter__(self) -> LoopFilesystems:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def thaw(path: str) -> None:
    """Defensive FITHAW; a mount that is not frozen (or gone) is fine."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        fcntl.ioctl(fd, FITHAW, 0)
    except OSError:
        pass
    finally:
        os.close(fd)


def _retry(argv: List[str], attempts: int = 50) -> bool:
    """Teardown can meet a process that is just exiting (EBUSY): retry briefly."""
    for _ in range(attempts):
        if subprocess.run(argv, capture_output=True, timeout=60, check=False).returncode == 0:
            return True
        time.sleep(0.1)
    return False
