"""Run bin/launcher.sh the way the agent does, with a PATH made of exactly the tools we choose."""
from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

LAUNCH_TIMEOUT = 120.0


@dataclass(frozen=True)
class Launch:
    """What one launcher run printed and returned."""

    returncode: int
    stdout: str
    stderr: str


def tool_dir(root: Path, tools: Mapping[str, str]) -> Path:
    """A PATH directory holding exactly `tools` (name -> target path or script text)."""
    root.mkdir(parents=True, exist_ok=True)
    for name, target in tools.items():
        path = root / name
        if target.startswith("#!"):
            path.write_text(target)
            path.chmod(0o755)
        else:
            path.symlink_to(target)
    return root


def run_launcher(ext_dir: Path, args: Sequence[str], path: str, cwd: Path,
                 shell: Sequence[str] = ("sh", "-c")) -> Launch:
    """Run the launcher in a clean environment with only `path` as PATH.

    Default is the agent's way, `sh -c "bin/launcher.sh ARGS"` (relative when cwd is the
    extension dir); a shell without "-c", e.g. ("dash",), runs the script file with it.
    """
    script = "bin/launcher.sh" if cwd == ext_dir else str(ext_dir / "bin" / "launcher.sh")
    program = shutil.which(shell[0]) or shell[0]
    if shell[-1] == "-c":
        argv = [program, *shell[1:], " ".join([script, *args])]
    else:
        argv = [program, *shell[1:], script, *[a.strip("'") for a in args]]
    env = {"PATH": path, "LANG": "C.UTF-8", "HOME": str(cwd)}
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=LAUNCH_TIMEOUT, check=False)
    return Launch(done.returncode, done.stdout, done.stderr)


def pyenv_interpreters() -> list:
    """Extra CPythons for the launcher test, when this machine has pyenv (the CI box may not)."""
    root = Path(os.environ.get("PYENV_ROOT", "/root/.pyenv")) / "versions"
    found = []
    for version in ("3.9", "3.10", "3.11", "3.12", "3.13"):
        matches = sorted(root.glob(f"{version}.*/bin/python{version}")) if root.is_dir() else []
        found += [str(m) for m in matches[-1:]]
    return found
