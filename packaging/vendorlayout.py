"""Place each resolved wheel in exactly one vendor folder per target, without duplicates."""
from __future__ import annotations

import posixpath
import zipfile
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from wheelvendor import BuildError, Target, Wheel, sha256_file

COMMON = "common"


def neutral_folder(arch: str) -> str:
    return f"abi3-{arch}"


@dataclass(frozen=True)
class Placement:
    """One wheel unpacked into one vendor folder."""

    wheel: Wheel
    folder: str
    sha256: str


def prefer_oldest_abi3(resolved: Mapping[Target, Sequence[Wheel]]
                       ) -> dict[Target, list[Wheel]]:
    """Use one abi3 build per project and arch for every version it supports.

    pip picks the newest abi3 build a version accepts (cryptography: cp311-abi3 for 3.11+,
    cp39-abi3 below); the stable ABI makes the cp39-abi3 build valid on every later version,
    so shipping it alone avoids one copy of the library per version.
    """
    oldest: dict[tuple[str, str], Wheel] = {}
    for target, wheels in resolved.items():
        for wheel in wheels:
            if "abi3" not in wheel.abis or wheel.min_minor is None:
                continue
            key = (target.arch, wheel.project)
            best = oldest.get(key)
            if best is None or wheel.min_minor < (best.min_minor or 0):
                oldest[key] = wheel
    unified: dict[Target, list[Wheel]] = {}
    for target, wheels in resolved.items():
        unified[target] = [_abi3_choice(oldest, target, wheel) for wheel in wheels]
    return unified


def _abi3_choice(oldest: Mapping[tuple[str, str], Wheel], target: Target, wheel: Wheel) -> Wheel:
    best = oldest.get((target.arch, wheel.project))
    if "abi3" not in wheel.abis or best is None or best.version != wheel.version:
        return wheel
    return best if best.min_minor is not None and best.min_minor <= target.minor else wheel


def plan(resolved: Mapping[Target, Sequence[Wheel]]) -> list[Placement]:
    """Assign every distinct wheel to the folder(s) shared by exactly the targets that chose it.

    Pure wheels go to common/ when they are the only wheel of their project anywhere;
    abi3 (or ABI-less platform) wheels chosen by every version of an arch go to abi3-<arch>/;
    anything else lands in the cp3XX-<arch>/ folder of each target that chose it.
    """
    chosen_by: dict[str, set[Target]] = defaultdict(set)
    by_name: dict[str, Wheel] = {}
    digests: dict[str, str] = {}
    for target, wheels in resolved.items():
        for wheel in wheels:
            digest = sha256_file(wheel.path)
            if digests.setdefault(wheel.filename, digest) != digest:
                raise BuildError(f"two different files named {wheel.filename} in the cache")
            chosen_by[wheel.filename].add(target)
            by_name[wheel.filename] = wheel
    wheels_of_project: dict[str, set[str]] = defaultdict(set)
    for name, wheel in by_name.items():
        wheels_of_project[wheel.project].add(name)
    versions_of_arch: dict[str, set[int]] = defaultdict(set)
    for target in resolved:
        versions_of_arch[target.arch].add(target.minor)
    placements = []
    for name in sorted(by_name):
        wheel, targets = by_name[name], chosen_by[name]
        for folder in _folders(wheel, targets, wheels_of_project, versions_of_arch):
            placements.append(Placement(wheel, folder, digests[name]))
    _check_unique(placements)
    return placements


def _folders(wheel: Wheel, targets: set[Target], wheels_of_project: Mapping[str, set[str]],
             versions_of_arch: Mapping[str, set[int]]) -> list[str]:
    if wheel.is_pure and len(wheels_of_project[wheel.project]) == 1:
        return [COMMON]
    arches = {t.arch for t in targets}
    if wheel.is_version_neutral and not wheel.is_pure and len(arches) == 1:
        arch = next(iter(arches))
        if {t.minor for t in targets} == versions_of_arch[arch]:
            return [neutral_folder(arch)]
    return sorted(t.name for t in targets)


def _check_unique(placements: Sequence[Placement]) -> None:
    seen: dict[tuple[str, str], str] = {}
    for placement in placements:
        key = (placement.folder, placement.wheel.project)
        other = seen.setdefault(key, placement.wheel.filename)
        if other != placement.wheel.filename:
            raise BuildError(f"vendor/{placement.folder} would hold two builds of "
                             f"{placement.wheel.project}: {other} and {placement.wheel.filename}")


def search_path(target: Target, folders: set[str]) -> list[str]:
    """The vendor folders a target imports from, most specific first."""
    order = [target.name, neutral_folder(target.arch), COMMON]
    return [folder for folder in order if folder in folders]


def wheel_entries(placement: Placement) -> Iterator[tuple[str, bytes]]:
    """(path inside vendor/<folder>/, content) for the importable files of a wheel.

    `<name>.data/purelib|platlib/` is merged into the root as an installer would; scripts,
    headers and data files are not importable and are left out.
    """
    with zipfile.ZipFile(placement.wheel.path) as wheel_zip:
        for info in sorted(wheel_zip.infolist(), key=lambda i: i.filename):
            if info.is_dir():
                continue
            path = _importable_path(info.filename)
            if path is not None:
                yield posixpath.join("vendor", placement.folder, path), wheel_zip.read(info)


def _importable_path(name: str) -> str | None:
    if name.startswith("/") or ".." in name.split("/"):
        raise BuildError(f"unsafe path in wheel: {name}")
    head, _, rest = name.partition("/")
    if head.endswith(".data"):
        kind, _, inner = rest.partition("/")
        return inner if kind in ("purelib", "platlib") and inner else None
    if "__pycache__" in name.split("/") or name.endswith((".pyc", ".pyo")):
        return None
    return name


def import_roots(placement: Placement) -> list[str]:
    """Shallowest importable names of a wheel: `azure.storage.blob`, `_cffi_backend`, ..."""
    with zipfile.ZipFile(placement.wheel.path) as wheel_zip:
        names = [_importable_path(n) for n in wheel_zip.namelist()]
    files = sorted(n for n in names if n and ".dist-info/" not in n)
    packages = {posixpath.dirname(n) for n in files if posixpath.basename(n) == "__init__.py"}
    roots = {p for p in packages if not _has_ancestor(p, packages)}
    for name in files:
        if "/" not in name and name.endswith((".py", ".so")) and name != "__init__.py":
            module = name.split(".")[0]
            if not module.startswith("_distutils") and module != "setup":
                roots.add(module)
    return sorted(r.replace("/", ".") for r in roots)


def _has_ancestor(package: str, packages: set[str]) -> bool:
    parent = posixpath.dirname(package)
    while parent:
        if parent in packages:
            return True
        parent = posixpath.dirname(parent)
    return False
