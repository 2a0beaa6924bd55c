"""extension.log is shared by enable, disable and every worker at once: rotation by one
process never loses or duplicates another's lines."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WRITER = """
import sys
from pathlib import Path
import handler.logs as logs
from plumbing.redact import Redactor
logs.MAX_BYTES = 16 * 1024
logs.BACKUPS = 400
logger = logs.configure(Path(sys.argv[1]), Redactor())
for i in range(int(sys.argv[3])):
    logger.info("writer %s line %05d %s", sys.argv[2], i, "x" * 100)
"""


def test_concurrent_writers_rotate_without_losing_lines(tmp_path: Path) -> None:
    writers, lines = 4, 1500
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(w), str(lines)],
                              cwd=ROOT, env={"PYTHONPATH": str(ROOT)})
             for w in range(writers)]
    for proc in procs:
        assert proc.wait(timeout=120) == 0, "a writer failed"
    seen = []
    for path in tmp_path.glob("extension.log*"):
        seen += [line.split(" writer ", 1)[1][:13] for line in
                 path.read_text(encoding="utf-8").splitlines() if " writer " in line]
    assert len(seen) == len(set(seen)), f"{len(seen) - len(set(seen))} line(s) duplicated"
    assert len(set(seen)) == writers * lines, \
        f"{writers * lines - len(set(seen))} of {writers * lines} lines lost in rotation"
    assert max(p.stat().st_size for p in tmp_path.glob("extension.log*")) <= 16 * 1024 + 400, \
        "every file stays near the rotation size"
