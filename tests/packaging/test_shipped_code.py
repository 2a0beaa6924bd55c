"""The shipped code itself imports and starts on every CPython here, with only vendored deps."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.packaging.launchtools import pyenv_interpreters, run_launcher, tool_dir

SYSTEM_PYTHON = "/usr/bin/python3"
PACKAGES = ("handler", "plumbing", "capture_engine", "connectivity", "snapshot")
IMPORT_ALL = """
import importlib, json, pkgutil, sys
failed, count = [], 0
for name in sys.argv[1:]:
    try:
        package = importlib.import_module(name)
    except ImportError as exc:
        failed.append(f"{name}: {exc!r}")
        continue
    for info in pkgutil.walk_packages(getattr(package, "__path__", []), name + "."):
        if info.name.rsplit(".", 1)[-1] == "__main__":
            continue  # running it is the launcher test's job
        try:
            importlib.import_module(info.name)
            count += 1
        except Exception as exc:
            failed.append(f"{info.name}: {exc!r}")
print(json.dumps({"count": count, "failed": failed}))
"""


def _search_path(ext_dir: Path, python: str) -> str:
    minor = subprocess.run([python, "-c", "import sys; print('3.%d' % sys.version_info[1])"],
                           capture_output=True, text=True, timeout=30, check=True).stdout.strip()
    for line in (ext_dir / "vendor" / "targets.txt").read_text().splitlines():
        version, arch, *folders = line.split()
        if version == minor and arch == "x86_64":
            return ":".join([str(ext_dir)] + [str(ext_dir / "vendor" / f) for f in folders])
    raise AssertionError(f"no vendor folders for {minor} x86_64")


@pytest.mark.parametrize("python", [SYSTEM_PYTHON, *pyenv_interpreters()])
def test_every_shipped_module_imports(installed: Path, python: str) -> None:
    shipped = [p for p in PACKAGES if (installed / p / "__init__.py").is_file()]
    assert "handler" in shipped, "handler/ is not in the package"
    env = {"PYTHONPATH": _search_path(installed, python), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([python, "-s", "-c", IMPORT_ALL, *shipped], cwd=installed, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"{python}: {done.stderr}"
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert not report["failed"], f"{python} cannot import shipped modules: {report['failed']}"
    assert report["count"] > 0, "no module was imported"


@pytest.mark.parametrize("python", [SYSTEM_PYTHON, *pyenv_interpreters()])
def test_real_handler_starts_through_the_launcher(fresh_install: Path, tmp_path: Path,
                                                  python: str) -> None:
    """Without HandlerEnvironment.json install must fail with a coded message, not a crash."""
    bin_dir = tool_dir(tmp_path / "bin", {"python3": python})
    run = run_launcher(fresh_install, ["install"], f"{bin_dir}:/usr/bin:/bin", fresh_install)
    output = run.stdout + run.stderr
    assert run.returncode not in (0, 52, 53, 54), f"{python}: exit {run.returncode}: {output}"
    for crash in ("Traceback", "ModuleNotFoundError", "SyntaxError"):
        assert crash not in output, f"{python}: the handler crashed: {output}"
    assert "HandlerEnvironment.json" in output, f"{python}: the handler should name it: {output}"
