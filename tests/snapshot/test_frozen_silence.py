"""While filesystems are frozen the worker opens no file and imports nothing (audit hooks)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.snapshot.conftest import make_disks, settings_dicts, write_vmbackup_conf

pytestmark = pytest.mark.root
ROOT = Path(__file__).resolve().parents[2]

CHILD = r"""
import json, sys
from datetime import datetime, timezone
from plumbing.blobstore import BlobStore
from plumbing.retry import NO_RETRY
from snapshot.config import load_local_config
from snapshot.log import BufferedLog
from snapshot.runner import run_snapshot
from snapshot.settings import parse_snapshot_settings
from snapshot.watchdog import FIFREEZE, FITHAW

state = {"frozen": 0, "seen": [], "ioctls": []}
WATCH = ("open", "import", "os.rename", "os.remove", "os.mkdir", "os.truncate", "os.chmod",
         "shutil.copyfile", "subprocess.Popen", "os.listdir", "os.scandir")

def hook(event, args):
    if event == "fcntl.ioctl" and args[1] in (FIFREEZE, FITHAW):
        state["ioctls"].append(args[1])
        state["frozen"] += 1 if args[1] == FIFREEZE else -1
    elif state["frozen"] > 0 and event in WATCH:
        state["seen"].append(f"{event} {str(args)[:160]}")

public, protected = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
settings = parse_snapshot_settings(public, protected, now=datetime.now(timezone.utc))
config = load_local_config()
sys.addaudithook(hook)
result = run_snapshot(settings, blob_store=BlobStore(policy=NO_RETRY, timeout=10),
                      config=config, log=BufferedLog())
print(json.dumps({"ok": result.ok, "message": result.message, "seen": state["seen"],
                  "freezes": state["ioctls"].count(FIFREEZE)}))
"""


def test_worker_touches_no_file_while_frozen(loopfs, azurite, confdir, tmp_path):
    mounts = [loopfs("ext4").mountpoint, loopfs("xfs").mountpoint]
    write_vmbackup_conf(confdir, mounts)
    public, protected = settings_dicts(make_disks(azurite, 3))
    (tmp_path / "pub.json").write_text(json.dumps(public))
    (tmp_path / "pro.json").write_text(json.dumps(protected))
    env = dict(os.environ, PYTHONPATH=str(ROOT), VMSNAPSHOT_CONF=str(confdir / "vmbackup.conf"),
               VMSNAPSHOT_PLUGIN_CONFIG=str(confdir / "none.json"),
               VMSNAPSHOT_WORKLOAD_CONF=str(confdir / "none.conf"))
    done = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "pub.json"),
                           str(tmp_path / "pro.json")], env=env, cwd=str(ROOT),
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["ok"] and report["freezes"] == 2, report
    assert report["seen"] == [], f"file access or import while frozen: {report['seen']}"
