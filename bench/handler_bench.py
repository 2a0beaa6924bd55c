"""Through the agent: how long enable holds the agent, and enable-to-terminal-status times.

    sudo .venv/bin/python bench/handler_bench.py [--runs 5] [--json]

The packaged extension is installed by the fake agent; a VMSnapshot of one loop-mounted ext4
filesystem with a writer, and 1 or 4 page blobs in Azurite, is asked for through encrypted
settings. Next to it, in the same process: the blob snapshots alone (BlobStore.create_snapshot
on the same disks), the reference for what the snapshot itself costs.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devtools.azurite import Azurite  # noqa: E402
from devtools.backupsettings import make_disks, settings_dicts  # noqa: E402
from devtools.fabric import TenantCertificate  # noqa: E402
from devtools.fakeagent import FakeAgent  # noqa: E402
from devtools.loopfs import LoopFilesystems  # noqa: E402
from devtools.writer import Writer  # noqa: E402
from devtools.zipbuild import build_zip  # noqa: E402
from plumbing.blobstore import BlobStore  # noqa: E402


def one_run(agent: FakeAgent, zip_path: Path, azurite, disks: int, mount: str,
            confdir: Path, index: int) -> dict:
    ext_dir = agent.fresh_install(zip_path, f"1.0.{index}")
    agent.run(ext_dir, "install")
    uris = make_disks(azurite, disks)
    public, protected = settings_dicts(uris, status=azurite.blob_sas_uri("bench", f"s{index}"))
    agent.write_settings(ext_dir, 1, public, protected)
    started = time.monotonic()
    enable = agent.run(ext_dir, "enable", 1)
    status = agent.wait_terminal(ext_dir, 1, timeout=120, interval=0.01)
    total = time.monotonic() - started
    assert status["status"] == "success", status
    store = BlobStore()
    alone = time.monotonic()
    for uri in uris:
        store.create_snapshot(uri, {"bench": "1"})
    alone = time.monotonic() - alone
    return {"enable_s": enable.duration, "terminal_s": total, "snapshots_alone_s": alone}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    zip_path = build_zip()
    rows = []
    with tempfile.TemporaryDirectory() as tmp, Azurite() as azurite, \
            LoopFilesystems(Path(tmp)) as loops:
        work = Path(tmp)
        mount = loops.make("ext4").mountpoint
        confdir = work / "etc"
        confdir.mkdir()
        (confdir / "vmbackup.conf").write_text(
            f"[SnapshotThread]\nfsfreeze = True\ntimeout = 60\nMountsToFreeze = {mount}\n")
        writer = Writer(os.path.join(mount, "w.bin"))
        lib_dir = work / "waagent"
        agent = FakeAgent(lib_dir=lib_dir, log_root=work / "log",
                          certificate=TenantCertificate.create(lib_dir))
        agent.extra_env.update(VMSNAPSHOT_CONF=str(confdir / "vmbackup.conf"),
                               VMSNAPSHOT_PLUGIN_CONFIG=str(confdir / "none.json"),
                               VMSNAPSHOT_WORKLOAD_CONF=str(confdir / "none.conf"))
        try:
            for disks in (1, 4):
                runs = [one_run(agent, zip_path, azurite, disks, mount, confdir,
                                disks * 100 + i) for i in range(args.runs)]
                rows.append({"disks": disks, **{key: statistics.median(r[key] for r in runs)
                                                for key in runs[0]}})
        finally:
            writer.stop()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print("| disk blobs | enable returns to the agent (ms) | enable to terminal status (ms) "
          "| blob snapshots alone (ms) |")
    print("|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['disks']} | {row['enable_s'] * 1000:.0f} | {row['terminal_s'] * 1000:.0f}"
              f" | {row['snapshots_alone_s'] * 1000:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
