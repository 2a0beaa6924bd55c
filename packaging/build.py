"""Build dist/<Publisher>.<Type>-<Version>.zip: manifest, launcher, code and vendored wheels."""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import re
import sys
import time
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bundledpcap
from vendorlayout import import_roots, plan, prefer_oldest_abi3, search_path, wheel_entries
from wheelvendor import BuildError, WheelCache, all_targets

ROOT = Path(__file__).resolve().parent.parent
CODE_PACKAGES = ("handler", "plumbing", "capture_engine", "connectivity", "snapshot")
LAUNCHER_FILES = ("bin/launcher.sh", "bin/selfcheck.py")
COMMANDS = ("installCommand", "uninstallCommand", "updateCommand", "enableCommand",
            "disableCommand")
EXCLUDED_DIRS = {"__pycache__", "tests", "test", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
EXCLUDED_SUFFIXES = (".pyc", ".pyo", ".swp", "~", ".orig", ".rej")
# Fixed entry time and modes: the same tree and wheels give the same zip bytes.
ZIP_TIME = (1980, 1, 1, 0, 0, 0)
EXECUTABLE = {"bin/launcher.sh"}


def read_project(root: Path) -> dict[str, str]:
    """name (<publisher>.<type>) and version from pyproject.toml."""
    try:
        import tomllib  # novermin - build-time only, runs on the developer's Python 3.11+
    except ImportError as exc:
        raise BuildError("packaging/build.py needs Python 3.11+ (tomllib); "
                         "run it with .venv/bin/python") from exc
    data = tomllib.loads((root / "pyproject.toml").read_text())
    ext = data.get("tool", {}).get("extension", {})
    missing = [k for k in ("publisher", "type") if not ext.get(k)]
    if missing or not data.get("project", {}).get("version"):
        raise BuildError(f"pyproject.toml lacks [tool.extension] {missing} or [project] version")
    return {"name": f"{ext['publisher']}.{ext['type']}", "version": data["project"]["version"]}


def check_manifest(root: Path, shipped: Sequence[str]) -> bytes:
    """HandlerManifest.json as the agent reads it: an array; element 0 has the 5 commands."""
    raw = (root / "HandlerManifest.json").read_bytes()
    try:
        manifest = json.loads(raw)
        commands = manifest[0]["handlerManifest"]
    except (ValueError, LookupError, TypeError) as exc:
        raise BuildError(f"HandlerManifest.json is not [{{'handlerManifest': ...}}]: {exc}") \
            from exc
    for key in COMMANDS:
        command = commands.get(key) if isinstance(commands, dict) else None
        if not isinstance(command, str) or not command.split():
            raise BuildError(f"HandlerManifest.json: {key} missing or empty")
        if command.split()[0] not in shipped:
            raise BuildError(f"HandlerManifest.json: {key} runs {command.split()[0]!r}, "
                             "which is not in the package")
    return raw


def code_files(root: Path) -> list[str]:
    """Source and package data of the runtime packages, without tests or caches."""
    found = []
    for package in CODE_PACKAGES:
        for path in sorted((root / package).rglob("*")):
            rel = path.relative_to(root)
            if not path.is_file() or EXCLUDED_DIRS.intersection(rel.parts[:-1]):
                continue
            if path.name.startswith((".", "test_")) or path.name.endswith(EXCLUDED_SUFFIXES):
                continue
            found.append(rel.as_posix())
    if "handler/__main__.py" not in found:
        print("build: warning: handler/__main__.py does not exist yet; "
              "the package will not run", file=sys.stderr)
    return found


def vendor_entries(cache: WheelCache, requirements: list[str]) -> dict[str, bytes]:
    """Unpacked wheels plus vendor/MANIFEST.json and vendor/targets.txt."""
    resolved = prefer_oldest_abi3(cache.resolve_all(all_targets()))
    placements = plan(resolved)
    entries: dict[str, bytes] = {}
    for placement in placements:
        for path, data in wheel_entries(placement):
            if entries.setdefault(path, data) != data:
                raise BuildError(f"two wheels write different content to {path}")
    folders = {p.folder for p in placements}
    direct = {r.split("==")[0].strip().lower().replace("_", "-") for r in requirements}
    targets = {t.name: {"python": t.version, "arch": t.arch, "path": search_path(t, folders)}
               for t in resolved}
    manifest = {
        "format": 1,
        "requirements": requirements,
        "targets": targets,
        "wheels": [{"wheel": p.wheel.filename, "sha256": p.sha256, "folder": p.folder,
                    "project": p.wheel.project, "version": p.wheel.version,
                    "direct": p.wheel.project in direct, "imports": import_roots(p)}
                   for p in placements],
    }
    entries["vendor/MANIFEST.json"] = json.dumps(manifest, indent=1, sort_keys=True).encode()
    lines = [f"{v['python']} {v['arch']} {' '.join(v['path'])}\n" for v in targets.values()]
    entries["vendor/targets.txt"] = "".join(sorted(lines)).encode()
    return entries


def read_requirements(path: Path) -> list[str]:
    lines = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
    return [line for line in lines if line]


def write_zip(target: Path, entries: dict[str, bytes]) -> None:
    """Sorted entries, fixed times and modes; written beside the target, then renamed."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as out:
            for name in sorted(entries):
                info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
                info.create_system = 3
                info.external_attr = (0o100755 if name in EXECUTABLE else 0o100644) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                out.writestr(info, entries[name])
        os.replace(partial, target)
    finally:
        if partial.exists():
            partial.unlink()


@contextmanager
def build_lock(build_dir: Path) -> Iterator[None]:
    """One build at a time per tree: parallel test sessions share the wheel cache."""
    build_dir.mkdir(parents=True, exist_ok=True)
    with open(build_dir / ".build.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build(root: Path, out_dir: Path, offline: bool, version: str | None,
          cache_dir: Path | None = None) -> Path:
    project = read_project(root)
    version = project["version"] if version is None else version
    if not re.fullmatch(r"[0-9]+(\.[0-9]+){1,3}", version):
        raise BuildError(f"version {version!r} is not like 1.2.3")
    requirements_path = root / "requirements.txt"
    requirements = read_requirements(requirements_path)
    with build_lock(root / "build"):
        cache = WheelCache(cache_dir or root / "build" / "wheelcache", requirements_path,
                           offline)
        entries = {name: (root / name).read_bytes() for name in code_files(root)}
        for name in LAUNCHER_FILES:
            entries[name] = (root / name).read_bytes()
        entries.update(vendor_entries(cache, requirements))
        entries.update(bundledpcap.entries(root, bundledpcap.fetch(cache.root, offline)))
        entries["HandlerManifest.json"] = check_manifest(root, sorted(entries))
        target = out_dir / f"{project['name']}-{version}.zip"
        write_zip(target, entries)
    return target


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--offline", action="store_true",
                        help="never use the network: every wheel must be in build/wheelcache/")
    parser.add_argument("--version", help="package version (default: pyproject's)")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "dist")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "build" / "wheelcache",
                        help="where downloaded wheels are kept (default build/wheelcache/)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        target = build(ROOT, args.out_dir.resolve(), args.offline, args.version,
                       args.cache_dir.resolve())
    except (BuildError, OSError) as exc:
        print(f"build failed: {exc}", file=sys.stderr)
        return getattr(exc, "code", 2) if isinstance(exc, BuildError) else 2
    size = target.stat().st_size
    print(f"{target} {size} bytes ({size / 1048576:.1f} MiB) "
          f"in {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
