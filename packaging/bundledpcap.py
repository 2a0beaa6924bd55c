"""The libpcap shipped in the zip: one .so per arch from a pinned PyPI wheel, and its licenses."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from wheelvendor import ARCHES, PIP_TIMEOUT, BuildError, sha256_file

# Adam Karpierz's `libpcap` (BSD-3-Clause) carries tcpdump.org's libpcap 1.10.6, built with
# TPACKET_V3, for Linux x86_64 and aarch64, needing nothing but glibc (<= 2.17 symbols). Its
# Python module is not shipped, only the two .so files. cypcap was the first choice but
# has no aarch64 wheel, and its x86_64 libpcap needs libnl-3 (LGPL-2.1) beside it.
WHEEL = "libpcap-1.11.0b29-py3-none-any.whl"
REQUIREMENT = "libpcap==1.11.0b29"
SHA256 = "3be5f1d38df73ea585432c5b3f38141f8b2cccf85199b42bcbf62019b79f2b74"
MEMBER = "libpcap/_platform/linux/{arch}/tcpdump/libpcap.so"
LIBPCAP_VERSION = b"libpcap version 1.10.6"
# In the zip, beside the code that loads it (capture_engine/pcaplib.py: BUNDLED_DIR).
TARGET_DIR = "capture_engine/_libpcap"
TARGET = TARGET_DIR + "/{arch}/libpcap.so.1"
LICENSE_SOURCE = "third_party/libpcap/LICENSE"
ELF_MACHINES = {"x86_64": 62, "aarch64": 183}  # e_machine: EM_X86_64, EM_AARCH64


def fetch(cache_dir: Path, offline: bool) -> Path:
    """The pinned wheel from <cache>/native/, downloaded once; its sha256 must match."""
    folder = cache_dir / "native"
    path = folder / WHEEL
    if not path.is_file():
        if offline:
            raise BuildError(f"--offline: the wheel cache has no {WHEEL} ({folder}); "
                             "run once without --offline")
        folder.mkdir(parents=True, exist_ok=True)
        _download(folder)
    digest = sha256_file(path)
    if digest != SHA256:
        raise BuildError(f"{path}: sha256 {digest}, expected {SHA256} (pinned in "
                         "packaging/bundledpcap.py): delete it and build again")
    return path


def _download(folder: Path) -> None:
    argv = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check",
            "--no-input", "--quiet", "--no-deps", "--only-binary=:all:", "-d", str(folder),
            REQUIREMENT]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=PIP_TIMEOUT,
                              check=False)
    except subprocess.TimeoutExpired as exc:
        raise BuildError(f"pip download {REQUIREMENT} timed out") from exc
    if done.returncode != 0 or not (folder / WHEEL).is_file():
        tail = (done.stderr or done.stdout).strip()[-2000:]
        raise BuildError(f"pip download {REQUIREMENT} failed (exit {done.returncode}):\n{tail}")


def check_elf(data: bytes, arch: str, name: str) -> None:
    """A 64-bit little-endian ELF shared object for `arch`, and libpcap of the pinned version."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise BuildError(f"{name} in {WHEEL} is not a 64-bit little-endian ELF file")
    machine = int.from_bytes(data[18:20], "little")
    if machine != ELF_MACHINES[arch]:
        raise BuildError(f"{name} in {WHEEL}: ELF machine {machine}, expected "
                         f"{ELF_MACHINES[arch]} for {arch}")
    if LIBPCAP_VERSION not in data:
        raise BuildError(f"{name} in {WHEEL} is not {LIBPCAP_VERSION.decode()}")


def entries(root: Path, wheel: Path) -> dict[str, bytes]:
    """capture_engine/_libpcap/<arch>/libpcap.so.1 for every arch, and the license texts."""
    found: dict[str, bytes] = {}
    with zipfile.ZipFile(wheel) as source:
        for arch in ARCHES:
            member = MEMBER.format(arch=arch)
            try:
                data = source.read(member)
            except KeyError:
                raise BuildError(f"{WHEEL} has no {member}") from None
            check_elf(data, arch, member)
            found[TARGET.format(arch=arch)] = data
    found[TARGET_DIR + "/LICENSE"] = (root / LICENSE_SOURCE).read_bytes()
    return found
