"""Freeze on real loop-mounted ext4/xfs: consistent images, blocked writers, guaranteed thaw."""
from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from snapshot.errors import FreezeError
from snapshot.freeze import Freezer
from snapshot.log import BufferedLog
from tests.snapshot.conftest import wait_for

pytestmark = pytest.mark.root


def fsck_clean(image: str, fstype: str, tmp_path) -> subprocess.CompletedProcess:
    if fstype == "xfs":
        replay_xfs_log(image, tmp_path)
    argv = ["e2fsck", "-fn", image] if fstype == "ext4" else ["xfs_repair", "-n", image]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


def replay_xfs_log(image: str, tmp_path) -> None:
    """XFS on this kernel leaves its log to replay after a freeze: mount once, like a boot."""
    target = tmp_path / "replay"
    target.mkdir(exist_ok=True)
    device = subprocess.run(["losetup", "-f", "--show", image], capture_output=True, text=True,
                            check=True, timeout=30).stdout.strip()
    try:
        subprocess.run(["mount", "-o", "nouuid", device, str(target)], check=True, timeout=60)
        subprocess.run(["umount", str(target)], check=True, timeout=60)
    finally:
        subprocess.run(["losetup", "-d", device], timeout=30)


def needs_recovery(image: str) -> bool:
    out = subprocess.run(["dumpe2fs", "-h", image], capture_output=True, text=True,
                         timeout=60).stdout
    return "needs_recovery" in out


@pytest.mark.parametrize("fstype", ["ext4", "xfs"])
def test_image_copied_while_frozen_is_clean_and_writer_blocks(loopfs, writer_factory, tmp_path,
                                                              fstype):
    fs = loopfs(fstype)
    writer = writer_factory(os.path.join(fs.mountpoint, "data.bin"))
    assert wait_for(lambda: writer.count > 20), "writer should make progress before the freeze"
    copy = tmp_path / "frozen.img"
    with Freezer([fs.mountpoint], timeout=30, log=BufferedLog()) as freezer:
        shutil.copyfile(fs.image, copy)
        before = writer.count
        time.sleep(0.3)
        during = writer.count
        assert not freezer.fired(), "the watchdog must not thaw before its deadline"
    assert during - before <= 1, f"writes must block while frozen ({during - before} completed)"
    assert wait_for(lambda: writer.count > during + 10), "writes must resume after the thaw"
    result = fsck_clean(str(copy), fstype, tmp_path)
    assert result.returncode == 0, f"image copied while frozen must be clean:\n{result.stdout}"
    if fstype == "ext4":
        assert not needs_recovery(str(copy)), "frozen ext4 must have no journal to replay"


def test_control_copy_without_freeze_needs_recovery(loopfs, writer_factory, tmp_path):
    """The check above can fail: a copy of a live mounted ext4 has a journal pending."""
    fs = loopfs("ext4")
    writer = writer_factory(os.path.join(fs.mountpoint, "data.bin"))
    assert wait_for(lambda: writer.count > 20), "writer should make progress"
    copy = tmp_path / "live.img"
    shutil.copyfile(fs.image, copy)
    assert needs_recovery(str(copy)), "a live mounted ext4 image should need recovery"


def test_watchdog_thaws_at_deadline_even_while_frozen(loopfs, writer_factory):
    fs = loopfs("ext4")
    writer = writer_factory(os.path.join(fs.mountpoint, "data.bin"))
    assert wait_for(lambda: writer.count > 5), "writer should make progress"
    with Freezer([fs.mountpoint], timeout=1.0, log=BufferedLog()) as freezer:
        frozen_at = writer.count
        assert wait_for(freezer.fired, timeout=10), "the watchdog should fire at its deadline"
        assert wait_for(lambda: writer.count > frozen_at + 5, timeout=5), \
            "writes must resume once the watchdog thawed, while the worker still holds the freeze"
    assert freezer.watchdog_fired, "the freezer must report that the watchdog thawed"


def test_several_filesystems_freeze_and_thaw_in_order(loopfs):
    mounts = [loopfs("ext4").mountpoint, loopfs("xfs").mountpoint]
    log = BufferedLog()
    with Freezer(mounts, timeout=30, log=log):
        for mount in mounts:
            with pytest.raises(OSError):  # EBUSY: already frozen by us
                import fcntl

                from snapshot.watchdog import FIFREEZE
                fd = os.open(mount, os.O_RDONLY)
                try:
                    fcntl.ioctl(fd, FIFREEZE, 0)
                finally:
                    os.close(fd)
    for mount in mounts:
        path = os.path.join(mount, "after")
        with open(path, "w") as stream:
            stream.write("ok")
        assert open(path).read() == "ok", f"{mount} must be writable after the thaw"


def test_freeze_of_missing_mount_is_coded_error(tmp_path):
    with pytest.raises(FreezeError) as info:
        with Freezer([str(tmp_path / "absent")], timeout=5, log=BufferedLog()):
            pass
    assert info.value.code == 123, "an unopenable mount is 'cannot open mount' (123)"
