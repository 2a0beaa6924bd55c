"""packaging/build.py: what the zip holds, where each wheel went, and how the build fails."""
from __future__ import annotations

import hashlib
import json
import re
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from devtools.zipbuild import ROOT

COMMANDS = ("installCommand", "uninstallCommand", "updateCommand", "enableCommand",
            "disableCommand")
CODE_PACKAGES = ("handler", "plumbing", "capture_engine", "connectivity", "snapshot")
VERSIONS = ("39", "310", "311", "312", "313")
ARCHES = {"x86_64": 62, "aarch64": 183}  # ELF e_machine: EM_X86_64, EM_AARCH64
BUILD = [sys.executable, str(ROOT / "packaging" / "build.py")]


def _read(package_zip: Path, name: str) -> bytes:
    with zipfile.ZipFile(package_zip) as package:
        return package.read(name)


def _manifest(package_zip: Path) -> dict:
    return json.loads(_read(package_zip, "vendor/MANIFEST.json"))


def _requirements() -> dict:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def test_zip_is_named_after_publisher_type_and_version(package_zip: Path) -> None:
    import tomllib  # novermin - the tests run on the 3.11 venv

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    ext = project["tool"]["extension"]
    expected = f"{ext['publisher']}.{ext['type']}-{project['project']['version']}.zip"
    assert package_zip.name == expected, f"zip should be {expected}, is {package_zip.name}"


def test_handler_manifest_at_root_has_the_five_commands(package_zip: Path,
                                                        zip_names: list) -> None:
    manifest = json.loads(_read(package_zip, "HandlerManifest.json"))
    assert isinstance(manifest, list), "HandlerManifest.json must be a JSON array"
    commands = manifest[0]["handlerManifest"]
    for key in COMMANDS:
        script = commands[key].split()[0]
        assert script == "bin/launcher.sh", f"{key} should run bin/launcher.sh: {commands[key]}"
        assert script in zip_names, f"{key} runs {script}, which is not in the zip"


def test_no_tests_devtools_or_caches_in_the_zip(zip_names: list) -> None:
    bad = [n for n in zip_names
           if n.split("/")[0] in ("tests", "devtools", "bench", "packaging", "dist", "build")
           or "__pycache__" in n.split("/") or n.endswith((".pyc", ".pyo"))
           or re.search(r"(^|/)(tests?|test_[^/]*\.py)(/|$)", n) and not n.startswith("vendor/")]
    assert not bad, f"the zip must not carry tests, dev tools or caches: {bad[:10]}"


def test_every_code_file_older_than_the_zip_is_in_it(package_zip: Path,
                                                     zip_names: list) -> None:
    built = package_zip.stat().st_mtime
    names = set(zip_names)
    missing = []
    for package in CODE_PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            rel = path.relative_to(ROOT)
            if "__pycache__" in rel.parts or "tests" in rel.parts or path.name.startswith("test_"):
                continue
            if path.stat().st_mtime < built and rel.as_posix() not in names:
                missing.append(rel.as_posix())
    assert not missing, f"code files missing from the zip: {missing}"
    assert "handler/__main__.py" in names, "`python -m handler` needs handler/__main__.py"


def test_every_target_has_a_search_path_with_its_folders(package_zip: Path,
                                                         zip_names: list) -> None:
    lines = _read(package_zip, "vendor/targets.txt").decode().splitlines()
    table = {tuple(line.split()[:2]): line.split()[2:] for line in lines}
    for arch in ARCHES:
        for version in VERSIONS:
            folders = table.get((f"3.{version[1:]}", arch))
            assert folders, f"vendor/targets.txt has no line for 3.{version[1:]} {arch}"
            assert folders[0] == f"cp{version}-{arch}", f"{arch} 3.{version[1:]}: {folders}"
            assert f"abi3-{arch}" in folders and "common" in folders, f"{folders}"
            for folder in folders:
                assert any(n.startswith(f"vendor/{folder}/") for n in zip_names), \
                    f"vendor/{folder}/ listed for {arch} 3.{version[1:]} but empty"


def test_every_requirement_is_vendored_once_for_every_target(package_zip: Path) -> None:
    """requirements.txt is read, not copied: pins added later are checked too."""
    manifest = _manifest(package_zip)
    for name, target in manifest["targets"].items():
        projects = [(w["project"], w["version"]) for w in manifest["wheels"]
                    if w["folder"] in target["path"]]
        names = [p for p, _ in projects]
        assert len(names) == len(set(names)), f"{name}: a project is vendored twice: {projects}"
        for project, version in _requirements().items():
            assert (project, version) in projects, f"{name}: {project}=={version} missing"


def test_native_wheels_are_in_the_right_folders(package_zip: Path, zip_names: list) -> None:
    manifest = _manifest(package_zip)
    for wheel in manifest["wheels"]:
        tags = wheel["wheel"][:-4].split("-")
        abi, platform = tags[-2], tags[-1]
        if abi == "none" and platform == "any":
            continue
        arch = "aarch64" if "aarch64" in platform else "x86_64"
        if abi == "abi3":
            assert wheel["folder"] in (f"abi3-{arch}",) + tuple(
                f"cp{v}-{arch}" for v in VERSIONS), f"{wheel}"
        else:
            assert wheel["folder"] == f"{abi}-{arch}", f"version-specific wheel misplaced: {wheel}"
    for arch in ARCHES:
        assert f"vendor/abi3-{arch}/cryptography/hazmat/bindings/_rust.abi3.so" in zip_names, \
            f"cryptography's native module for {arch} should be in vendor/abi3-{arch}/"
        assert any(re.match(rf"vendor/abi3-{arch}/psutil/_psutil_linux\..*so$", n)
                   for n in zip_names), f"psutil's native module for {arch} is missing"
        for version in VERSIONS:
            backend = f"vendor/cp{version}-{arch}/_cffi_backend.cpython-{version}-"
            assert any(n.startswith(backend) for n in zip_names), f"{backend}*.so missing"


def test_shared_objects_match_their_folder_arch(package_zip: Path) -> None:
    """aarch64 cannot run here; its .so files must at least be 64-bit ELF for aarch64."""
    checked = {arch: 0 for arch in ARCHES}
    with zipfile.ZipFile(package_zip) as package:
        for name in package.namelist():
            if not name.startswith("vendor/") or not re.search(r"\.so(\.|$)", name):
                continue
            arch = name.split("/")[1].split("-", 1)[1]
            header = package.open(name).read(20)
            assert header[:4] == b"\x7fELF" and header[4] == 2, f"{name}: not a 64-bit ELF"
            machine = struct.unpack("<H", header[18:20])[0]
            assert machine == ARCHES[arch], f"{name}: e_machine {machine}, want {ARCHES[arch]}"
            checked[arch] += 1
    assert all(checked.values()), f"no shared objects checked for some arch: {checked}"


def test_offline_rebuild_gives_the_same_vendor_bytes(package_zip: Path, tmp_path: Path) -> None:
    done = subprocess.run([*BUILD, "--offline", "--out-dir", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, f"offline rebuild failed: {done.stderr}"
    rebuilt = tmp_path / package_zip.name
    assert str(rebuilt) in done.stdout and "bytes" in done.stdout, f"{done.stdout!r}"
    with zipfile.ZipFile(package_zip) as first, zipfile.ZipFile(rebuilt) as second:
        names = second.namelist()
        assert names == sorted(names), "entries must be sorted"
        assert {i.date_time for i in second.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        vendor = [(i.filename, i.CRC) for i in first.infolist() if i.filename.startswith("vendor")]
        again = [(i.filename, i.CRC) for i in second.infolist() if i.filename.startswith("vendor")]
    assert vendor == again, "two builds from the same cache must vendor identical bytes"


def test_offline_build_with_an_empty_cache_refuses(tmp_path: Path) -> None:
    done = subprocess.run([*BUILD, "--offline", "--cache-dir", str(tmp_path / "empty"),
                           "--out-dir", str(tmp_path / "out")], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode != 0, "an offline build without cached wheels must fail"
    assert "--offline" in done.stderr and "wheel cache" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert not (tmp_path / "out").exists(), "a failed build must not leave a zip behind"


@pytest.mark.parametrize("version", ["../../etc/x", "1", "1.0.0; rm", ""])
def test_bad_version_is_refused(version: str, tmp_path: Path) -> None:
    done = subprocess.run([*BUILD, "--offline", "--version", version, "--out-dir",
                           str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 2, f"version {version!r}: exit {done.returncode} {done.stderr}"
    assert "Traceback" not in done.stderr and "build failed" in done.stderr, done.stderr
    assert not list(tmp_path.iterdir()), "nothing may be written for a refused version"


def test_manifest_records_sha256_of_each_cached_wheel(package_zip: Path) -> None:
    cache = ROOT / "build" / "wheelcache"
    for wheel in _manifest(package_zip)["wheels"]:
        copies = list(cache.glob(f"*/{wheel['wheel']}"))
        assert copies, f"{wheel['wheel']} is not in the wheel cache"
        digest = hashlib.sha256(copies[0].read_bytes()).hexdigest()
        assert digest == wheel["sha256"], f"{wheel['wheel']}: sha256 differs from the cache"
