"""Build the extension zip once per process and install it as the agent does (tests, benchmarks)."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD_TIMEOUT = 900.0

_lock = threading.Lock()
_built: dict[str | None, Path] = {}


class ZipBuildError(Exception):
    """packaging/build.py failed; the message carries its output."""


def build_zip(version: str | None = None) -> Path:
    """Run packaging/build.py once per process (per version) and return the zip path.

    Safe to call from several threads and several pytest processes: build.py holds a file
    lock on build/ while it works and renames the finished zip into place atomically. A
    `version` other than pyproject's (e.g. "1.1.0" for update tests) gives a second zip.
    """
    with _lock:
        cached = _built.get(version)
        if cached is not None and cached.is_file():
            return cached
        argv = [sys.executable, str(ROOT / "packaging" / "build.py")]
        if version is not None:
            argv += ["--version", version]
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True,
                              timeout=BUILD_TIMEOUT, check=False)
        if done.returncode != 0:
            raise ZipBuildError(f"packaging/build.py exited {done.returncode}:\n"
                                f"{done.stdout}{done.stderr}")
        path = Path(done.stdout.split()[0])
        if not path.is_file():
            raise ZipBuildError(f"packaging/build.py reported {path}, which does not exist")
        _built[version] = path
        return path


def install_zip(zip_path: Path, lib_dir: Path) -> Path:
    """Unzip to <lib_dir>/<Publisher>.<Type>-<Version>/ and add u+x to every file, as the agent.

    The zip's stem is `<Publisher>.<Type>-<Version>` by construction. Returns the extension dir.
    """
    ext_dir = Path(lib_dir) / Path(zip_path).stem
    if ext_dir.exists():
        raise FileExistsError(f"{ext_dir} already exists; the agent installs into a fresh dir")
    ext_dir.mkdir(parents=True)
    with zipfile.ZipFile(zip_path) as package:
        package.extractall(ext_dir)
    for folder, _dirs, files in os.walk(ext_dir):
        for name in files:
            path = os.path.join(folder, name)
            os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)
    return ext_dir
