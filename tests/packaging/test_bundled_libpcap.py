"""The zip carries libpcap for x86_64 and aarch64 with its license, and the x86_64 one loads."""
from __future__ import annotations

import os
import platform
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ARCHES = {"x86_64": 62, "aarch64": 183}  # ELF e_machine: EM_X86_64, EM_AARCH64
LIBRARY = "capture_engine/_libpcap/{arch}/libpcap.so.1"
LICENSE = "capture_engine/_libpcap/LICENSE"
GLIBC_ONLY = {"libc.so.6", "ld-linux-x86-64.so.2", "ld-linux-aarch64.so.1"}


@pytest.mark.parametrize("arch", list(ARCHES))
def test_zip_has_libpcap_for_each_arch(package_zip: Path, tmp_path: Path, arch: str) -> None:
    with zipfile.ZipFile(package_zip) as package:
        data = package.read(LIBRARY.format(arch=arch))
    assert data[:4] == b"\x7fELF" and data[4] == 2, f"{arch}: not a 64-bit ELF file"
    machine = struct.unpack("<H", data[18:20])[0]
    assert machine == ARCHES[arch], f"{arch}: e_machine {machine}, want {ARCHES[arch]}"
    assert b"libpcap version 1.10.6" in data, f"{arch}: not libpcap 1.10.6"
    path = tmp_path / "libpcap.so.1"
    path.write_bytes(data)
    dynamic = subprocess.run(["readelf", "-d", str(path)], capture_output=True, text=True,
                             timeout=30, check=True).stdout
    needed = {line.split("[")[1].rstrip("]") for line in dynamic.splitlines()
              if "(NEEDED)" in line}
    assert needed and needed <= GLIBC_ONLY, \
        f"{arch}: the bundled libpcap needs {needed - GLIBC_ONLY}, which the zip lacks"


def test_zip_carries_the_license_texts(package_zip: Path, zip_names: list) -> None:
    assert LICENSE in zip_names, f"{LICENSE} missing: BSD requires the text with the binary"
    with zipfile.ZipFile(package_zip) as package:
        text = package.read(LICENSE).decode()
    for needed in ("The Regents of the University of California",
                   "Redistributions in binary form must reproduce the above copyright",
                   "The names of the authors may not be used to endorse",
                   "Copyright (c) 2016-2026 Adam Karpierz", "libpcap-1.11.0b29-py3-none-any.whl"):
        assert needed in text, f"{LICENSE} lacks {needed!r}"
    python_files = [n for n in zip_names if n.startswith(("libpcap/", "vendor/common/libpcap/"))]
    assert not python_files, f"only the .so is shipped, not the wheel's module: {python_files}"


def test_installed_zip_loads_its_own_libpcap(installed: Path) -> None:
    """Forced to the bundled library, the zip's pcaplib loads the .so beside it and compiles."""
    code = ("from capture_engine import pcaplib; l = pcaplib.loaded(); "
            "print(l.describe()); print(l.name); "
            "print(len(pcaplib.compile_expression('udp and portrange 5000-5002', 65535)))")
    env = dict(os.environ, CAPTURE_LIBPCAP="bundled", PYTHONPATH=str(installed))
    done = subprocess.run([sys.executable, "-c", code], cwd=installed, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    described, name, length = done.stdout.split("\n")[:3]
    arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(platform.machine(), platform.machine())
    assert described.startswith(f"bundled _libpcap/{arch}/libpcap.so.1 (libpcap version 1.10.6"), \
        described
    assert Path(name) == installed / LIBRARY.format(arch=arch), name
    assert int(length) > 5, f"a compiled port-range filter of {length} instructions"
