"""bin/launcher.sh on the unzipped package: interpreter choice, vendored imports, failures."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from devtools.zipbuild import ROOT
from tests.packaging.launchtools import pyenv_interpreters, run_launcher, tool_dir

SYSTEM_PYTHON = "/usr/bin/python3"
UNAME = shutil.which("uname") or "/usr/bin/uname"
EXIT_NO_PYTHON, EXIT_NO_VENDOR, EXIT_BROKEN = 52, 53, 54
DIRECT = ("azure-storage-blob", "azure-core", "cryptography", "psutil", "pyroute2", "rich")


def _requirements() -> list:
    lines = [ln.split("#")[0].strip() for ln in (ROOT / "requirements.txt").read_text().split("\n")]
    return [ln.split("==") for ln in lines if ln]


def _python_minor(python: str) -> str:
    done = subprocess.run([python, "-c", "import sys; print('%d%d' % sys.version_info[:2])"],
                          capture_output=True, text=True, timeout=30, check=True)
    return done.stdout.strip()


def fake_python(version: str) -> str:
    return f"#!/bin/sh\necho {version}\n"


@pytest.mark.parametrize("shell", ["sh", "dash"])
def test_launcher_parses_as_posix_sh(shell: str) -> None:
    done = subprocess.run([shell, "-n", str(ROOT / "bin" / "launcher.sh")],
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, f"{shell} -n rejects the launcher: {done.stderr}"


def test_system_python_has_none_of_the_dependencies() -> None:
    """Otherwise the self-check below could pass on the system's copies."""
    done = subprocess.run([SYSTEM_PYTHON, "-s", "-c", "import azure.storage.blob"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0, "/usr/bin/python3 must not have azure.storage.blob installed"
    probe = ("import importlib.metadata as m\ntry: print(m.version('cryptography'))\n"
             "except m.PackageNotFoundError: print('absent')")
    done = subprocess.run([SYSTEM_PYTHON, "-s", "-c", probe], capture_output=True, text=True,
                          timeout=60, check=True)
    wanted = dict(_requirements())["cryptography"]
    assert done.stdout.strip() != wanted, f"system cryptography is already {wanted}"


@pytest.mark.parametrize("python", [SYSTEM_PYTHON, *pyenv_interpreters()])
def test_selfcheck_imports_everything_from_vendor(installed: Path, tmp_path: Path,
                                                  python: str) -> None:
    bin_dir = tool_dir(tmp_path / "bin", {"python3": python})
    run = run_launcher(installed, ["--selfcheck"], f"{bin_dir}:/usr/bin:/bin", installed)
    assert run.returncode == 0, f"selfcheck with {python} failed:\n{run.stdout}\n{run.stderr}"
    minor = _python_minor(python)
    assert f"vendor folders: cp{minor}-x86_64 abi3-x86_64 common" in run.stdout, run.stdout
    for name, version in _requirements():
        assert f"{name} {version} (" in run.stdout, f"{name} {version} not reported: {run.stdout}"
    assert "cryptography: Ed25519 sign/verify, AES-256-GCM round trip" in run.stdout, run.stdout
    assert "psutil: own rss" in run.stdout, run.stdout
    for name in DIRECT:
        assert name in run.stdout, f"{name} was not checked"


def test_selfcheck_under_dash_from_another_cwd(installed: Path, tmp_path: Path) -> None:
    bin_dir = tool_dir(tmp_path / "bin", {"python3": SYSTEM_PYTHON})
    run = run_launcher(installed, ["--selfcheck"], f"{bin_dir}:/usr/bin:/bin", tmp_path,
                       shell=("dash",))
    assert run.returncode == 0, f"launcher under dash from {tmp_path}: {run.stderr}"
    assert "selfcheck: ok" in run.stdout, run.stdout


def test_launcher_execs_the_handler_with_args_path_and_cwd(fresh_install: Path,
                                                           tmp_path: Path) -> None:
    """Swap in a stub handler (in a private install) to see exactly what the launcher passes."""
    stub = ("import json, os, sys\nprint(json.dumps({'cwd': os.getcwd(), 'argv': sys.argv[1:],"
            " 'path': sys.path, 'no_user_site': sys.flags.no_user_site}))\n")
    shutil.rmtree(fresh_install / "handler")
    (fresh_install / "handler").mkdir()
    (fresh_install / "handler" / "__init__.py").write_text("")
    (fresh_install / "handler" / "__main__.py").write_text(stub)
    bin_dir = tool_dir(tmp_path / "bin", {"python3": SYSTEM_PYTHON})
    run = run_launcher(fresh_install, ["enable", "'two words'"], f"{bin_dir}:/usr/bin:/bin",
                       tmp_path)
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout)
    assert seen["cwd"] == str(fresh_install.resolve()), f"cwd should be the extension dir: {seen}"
    assert seen["argv"] == ["enable", "two words"], f"arguments must pass through: {seen}"
    assert seen["no_user_site"] == 1, "the handler must run with -s"
    minor = _python_minor(SYSTEM_PYTHON)
    vendor = [p for p in seen["path"] if "/vendor/" in p]
    expected = [str(fresh_install.resolve() / "vendor" / f)
                for f in (f"cp{minor}-x86_64", "abi3-x86_64", "common")]
    assert vendor == expected, f"vendor search path: {vendor}"


def _failure_cases() -> list:
    cases = [
        ("python 3.8", {"python3": fake_python("3.8.10")}, EXIT_NO_PYTHON,
         "no python3 between 3.9 and 3.13 found (found: python3 3.8.10)"),
        ("python 3.14", {"python3": fake_python("3.14.0")}, EXIT_NO_PYTHON,
         "(found: python3 3.14.0)"),
        ("python that does not run", {"python3": "#!/bin/sh\nexit 1\n"}, EXIT_NO_PYTHON,
         "(found: python3 (does not run))"),
        ("no python", {}, EXIT_NO_PYTHON, "no python3 found on PATH"),
        ("riscv64", {"python3": SYSTEM_PYTHON, "uname": "#!/bin/sh\necho riscv64\n"},
         EXIT_NO_VENDOR, "no vendored dependencies for arch riscv64"),
    ]
    old = sorted(Path("/root/.pyenv/versions").glob("3.8.*/bin/python3.8"))
    if old:
        version = old[-1].parent.parent.name
        cases.append(("real python 3.8", {"python3": str(old[-1])}, EXIT_NO_PYTHON,
                      f"(found: python3 {version})"))
    return cases


@pytest.mark.parametrize("label,tools,code,message", _failure_cases(),
                         ids=[c[0] for c in _failure_cases()])
def test_launcher_says_what_is_missing(installed: Path, tmp_path: Path, label: str,
                                       tools: dict, code: int, message: str) -> None:
    bin_dir = tool_dir(tmp_path / "bin", {"uname": UNAME, **tools})
    run = run_launcher(installed, ["enable"], str(bin_dir), installed, shell=("/usr/bin/dash",
                                                                              "-c"))
    assert run.returncode == code, f"{label}: exit {run.returncode}, stderr {run.stderr!r}"
    assert message in run.stderr, f"{label}: stderr should say {message!r}: {run.stderr!r}"
    assert run.stdout == "", f"{label}: nothing may run: {run.stdout!r}"


def test_missing_target_table_is_reported(fresh_install: Path, tmp_path: Path) -> None:
    (fresh_install / "vendor" / "targets.txt").unlink()
    bin_dir = tool_dir(tmp_path / "bin", {"python3": SYSTEM_PYTHON})
    run = run_launcher(fresh_install, ["enable"], f"{bin_dir}:/usr/bin:/bin", fresh_install)
    assert run.returncode == EXIT_BROKEN, f"exit {run.returncode}: {run.stderr}"
    assert "package incomplete" in run.stderr and "targets.txt" in run.stderr, run.stderr


def test_selfcheck_fails_when_a_native_module_is_broken(fresh_install: Path,
                                                        tmp_path: Path) -> None:
    rust = fresh_install / "vendor" / "abi3-x86_64" / "cryptography" / "hazmat" / "bindings"
    (rust / "_rust.abi3.so").write_bytes(b"not an ELF file")
    bin_dir = tool_dir(tmp_path / "bin", {"python3": SYSTEM_PYTHON})
    run = run_launcher(fresh_install, ["--selfcheck"], f"{bin_dir}:/usr/bin:/bin",
                       fresh_install)
    assert run.returncode == 1, f"a broken cryptography must fail the selfcheck: {run.stdout}"
    assert "selfcheck: FAILED: cryptography" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr, run.stderr


def test_launcher_source_has_no_bashisms() -> None:
    """dash -n catches syntax; these are the bash-only forms dash would accept or misrun."""
    text = (ROOT / "bin" / "launcher.sh").read_text()
    code = "\n".join(line.split("#")[0] for line in text.splitlines()[1:])
    for bashism in ("[[", "function ", "local ", "$'", "<<<", "${!", "source ", "&>", "==",
                    "pipefail", "declare ", "$RANDOM"):
        assert bashism not in code, f"bashism {bashism!r} in bin/launcher.sh"
    assert text.startswith("#!/bin/sh\n"), "the launcher must be a /bin/sh script"
