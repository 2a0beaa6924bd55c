"""Resolve, cache and lay out the vendored wheels for every (CPython version, arch) target."""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

# Patch releases matter: cryptography excludes 3.9.0 and 3.9.1, and `--python-version 3.9`
# means 3.9.0. These are real, recent patch releases of each supported minor version.
PYTHON_PATCHES: dict[int, str] = {9: "3.9.18", 10: "3.10.13", 11: "3.11.7", 12: "3.12.1",
                                  13: "3.13.0"}
ARCHES: tuple[str, ...] = ("x86_64", "aarch64")
# manylinux2014 == glibc 2.17: the oldest baseline every wheel we need still publishes.
PLATFORM_TAG = "manylinux2014_{arch}"
LAYOUT_VERSION = "1"
PIP_TIMEOUT = 600.0


class BuildError(Exception):
    """The build cannot produce a correct package; the message says why."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Target:
    """One interpreter the package must run on: a CPython minor version on one arch."""

    minor: int
    arch: str

    @property
    def name(self) -> str:
        return f"cp3{self.minor}-{self.arch}"

    @property
    def version(self) -> str:
        return f"3.{self.minor}"


@dataclass(frozen=True)
class Wheel:
    """A wheel file, identified by its file name, with the tags parsed from it."""

    path: Path
    project: str
    version: str
    pythons: frozenset
    abis: frozenset
    platforms: frozenset

    @property
    def filename(self) -> str:
        return self.path.name

    @property
    def is_pure(self) -> bool:
        return self.abis == {"none"} and self.platforms == {"any"}

    @property
    def is_version_neutral(self) -> bool:
        """abi3 or no ABI at all: one build serves every CPython version of an arch."""
        return bool(self.abis) and self.abis <= {"abi3", "none"}

    @property
    def min_minor(self) -> int | None:
        """Lowest CPython 3 minor version this wheel's python tag accepts (cp39 -> 9)."""
        minors = [int(t[3:]) for t in self.pythons if re.fullmatch(r"(cp|py)3\d+", t)]
        minors += [0 for t in self.pythons if t in ("py3", "py2.py3")]
        return min(minors) if minors else None


def all_targets() -> list[Target]:
    return [Target(minor, arch) for arch in ARCHES for minor in sorted(PYTHON_PATCHES)]


def parse_wheel(path: Path) -> Wheel:
    """Parse `name-version(-build)?-py-abi-platform.whl` (PEP 427)."""
    parts = path.name[: -len(".whl")].split("-")
    if not path.name.endswith(".whl") or len(parts) not in (5, 6):
        raise BuildError(f"not a wheel file name: {path.name}")
    project = re.sub(r"[-_.]+", "-", parts[0]).lower()
    return Wheel(path, project, parts[1], frozenset(parts[-3].split(".")),
                 frozenset(parts[-2].split(".")), frozenset(parts[-1].split(".")))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class WheelCache:
    """build/wheelcache/<target>/: the wheels pip chose for that target, plus a stamp."""

    def __init__(self, root: Path, requirements: Path, offline: bool) -> None:
        self.root = root
        self.requirements = requirements
        self.offline = offline
        self.key = hashlib.sha256(
            requirements.read_bytes() + f"|{LAYOUT_VERSION}|{PYTHON_PATCHES}".encode()
        ).hexdigest()

    def resolve_all(self, targets: Sequence[Target]) -> dict[Target, list[Wheel]]:
        """Floor target first (its versions pin the others), then the rest in parallel."""
        floor, rest = targets[0], targets[1:]
        resolved = {floor: self.resolve(floor, None)}
        constraints = self._write_constraints(resolved[floor])
        with ThreadPoolExecutor(max_workers=4) as pool:
            futures = {t: pool.submit(self.resolve, t, constraints) for t in rest}
            for target, future in futures.items():
                resolved[target] = future.result()
        return resolved

    def resolve(self, target: Target, constraints: Path | None) -> list[Wheel]:
        folder = self.root / target.name
        cached = self._cached(folder)
        if cached is not None:
            return cached
        if self.offline:
            raise BuildError(f"--offline: the wheel cache has no resolution of requirements.txt "
                             f"for {target.name} ({folder}); run once without --offline")
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        self._pip_download(target, folder, constraints)
        wheels = sorted(folder.glob("*.whl"))
        stamp = {"key": self.key, "wheels": [w.name for w in wheels],
                 "sha256": {w.name: sha256_file(w) for w in wheels}}
        (folder / "resolved.json").write_text(json.dumps(stamp, indent=1, sort_keys=True))
        return [parse_wheel(w) for w in wheels]

    def _cached(self, folder: Path) -> list[Wheel] | None:
        try:
            stamp = json.loads((folder / "resolved.json").read_text())
        except (OSError, ValueError):
            return None
        paths = [folder / name for name in stamp.get("wheels", [])]
        if stamp.get("key") != self.key or not paths or not all(p.is_file() for p in paths):
            return None
        return [parse_wheel(p) for p in paths]

    def _write_constraints(self, wheels: Sequence[Wheel]) -> Path:
        path = self.root / "constraints.txt"
        path.write_text("".join(f"{w.project}=={w.version}\n" for w in wheels))
        return path

    def _pip_download(self, target: Target, folder: Path, constraints: Path | None) -> None:
        argv = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check",
                "--no-input", "--quiet", "--only-binary=:all:",
                "--platform", PLATFORM_TAG.format(arch=target.arch),
                "--python-version", PYTHON_PATCHES[target.minor],
                "--implementation", "cp", "--abi", f"cp3{target.minor}",
                "-d", str(folder), "-r", str(self.requirements)]
        if constraints is not None:
            argv += ["-c", str(constraints)]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=PIP_TIMEOUT,
                                  check=False)
        except subprocess.TimeoutExpired as exc:
            raise BuildError(f"pip download for {target.name} timed out after "
                             f"{PIP_TIMEOUT:.0f}s") from exc
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip()[-2000:]
            raise BuildError(f"pip download for {target.name} failed "
                             f"(exit {done.returncode}):\n{tail}")
