"""The code that ships (and the dev tools) must run on CPython 3.9: vermin finds no violation."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHECKED = ("handler", "plumbing", "capture_engine", "connectivity", "snapshot", "devtools",
           "bin")
# vermin has no __main__; this is its console script's entry point, run with this interpreter.
VERMIN = [sys.executable, "-c", "import sys; from vermin import main; sys.exit(main())"]


def test_vermin_finds_no_feature_newer_than_python_3_9() -> None:
    folders = [str(ROOT / name) for name in CHECKED if any((ROOT / name).rglob("*.py"))]
    assert folders, "nothing to check"
    done = subprocess.run([*VERMIN, "--no-tips", "-t=3.9-", "--violations", *folders],
                          cwd=ROOT, capture_output=True, text=True, timeout=170, check=False)
    report = done.stdout + done.stderr
    assert "Analyzing" in report, f"vermin did not run: {report}"
    assert done.returncode == 0 and "Target versions not met" not in report, \
        f"features newer than Python 3.9:\n{report}"
