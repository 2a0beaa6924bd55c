"""Benchmark: freeze window and writer stall vs. blob snapshot time, on loop fs and Azurite.

Run as root: `.venv/bin/python bench/snapshot_bench.py [--runs 3] [--json]`. Not a test.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devtools.azurite import Azurite  # noqa: E402
from devtools.loopfs import LoopFilesystems  # noqa: E402
from devtools.writer import Writer  # noqa: E402
from plumbing.blobstore import BlobStore  # noqa: E402
from plumbing.retry import NO_RETRY  # noqa: E402
from snapshot.config import load_local_config  # noqa: E402
from snapshot.disks import snapshot_disks  # noqa: E402
from snapshot.log import BufferedLog  # noqa: E402
from snapshot.runner import run_snapshot  # noqa: E402
from snapshot.settings import parse_snapshot_settings  # noqa: E402


def ticks_now() -> str:
    epoch = datetime(1, 1, 1, tzinfo=timezone.utc)
    return str(int((datetime.now(timezone.utc) - epoch).total_seconds() * 10_000_000))


def make_disks(azurite: Azurite, count: int) -> List[str]:
    container = "bench" + uuid.uuid4().hex[:8]
    uris = []
    for index in range(count):
        client = azurite.service().get_blob_client(container, f"disk{index}.vhd")
        uris.append(azurite.blob_sas_uri(container, f"disk{index}.vhd"))
        client.create_page_blob(1024 * 1024)
        client.upload_page(os.urandom(65536), offset=0, length=65536)
    return uris


def settings_for(uris: List[str]):
    import base64

    def b64(obj) -> str:
        return base64.b64encode(json.dumps(obj).encode()).decode()
    public = {"taskId": f"{uuid.uuid4()}_1", "commandToExecute": "snapshot",
              "commandStartTimeUTCTicks": ticks_now(),
              "objectStr": b64({"backupMetadata": [{"Key": "Bench", "Value": "1"}]})}
    return parse_snapshot_settings(public, {"objectStr": b64({"blobSASUri": uris})},
                                   now=datetime.now(timezone.utc))


def measure(azurite, mounts: List[str], writers: List[Writer], n_disks: int, runs: int,
            confdir: Path) -> Dict[str, float]:
    (confdir / "vmbackup.conf").write_text(
        f"[SnapshotThread]\ntimeout = 30\nMountsToFreeze = {','.join(mounts)}\n")
    config = load_local_config({"VMSNAPSHOT_CONF": str(confdir / "vmbackup.conf"),
                                "VMSNAPSHOT_PLUGIN_CONFIG": str(confdir / "none.json"),
                                "VMSNAPSHOT_WORKLOAD_CONF": str(confdir / "none.conf")})
    store = BlobStore(policy=NO_RETRY, timeout=10)
    uris = make_disks(azurite, n_disks)
    alone, windows, stalls, totals, inside = [], [], [], [], []
    for _ in range(runs):
        started = time.monotonic()
        snapshot_disks(store, uris, {"Bench": "alone"}, config.snapshot_parallelism)
        alone.append(time.monotonic() - started)
        started = time.monotonic()
        result = run_snapshot(settings_for(uris), blob_store=store, config=config,
                              log=BufferedLog())
        ended = time.monotonic()
        if not result.ok:
            raise SystemExit(f"benchmark run failed: {result.code} {result.message}")
        windows.append(result.freeze_window or 0.0)
        inside.append(result.timings.get("snapshot", 0.0))
        totals.append(ended - started)
        stalls.append(max(w.stall(started, ended) for w in writers))
    return {"filesystems": len(mounts), "disks": n_disks,
            "snapshot_ms": 1000 * statistics.median(alone),
            "freeze_window_ms": 1000 * statistics.median(windows),
            "snapshot_in_run_ms": 1000 * statistics.median(inside),
            "overhead_ms": 1000 * statistics.median(w - i for w, i in zip(windows, inside)),
            "writer_stall_ms": 1000 * statistics.median(stalls),
            "run_ms": 1000 * statistics.median(totals)}


def table(rows: List[Dict[str, float]]) -> str:
    lines = ["| filesystems | disk blobs | blob snapshots alone (ms) | freeze window (ms) | "
             "snapshots inside the window (ms) | freeze+thaw overhead (ms) | "
             "longest writer stall (ms) | end-to-end run (ms) |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['filesystems']} | {r['disks']} | {r['snapshot_ms']:.1f} | "
                     f"{r['freeze_window_ms']:.1f} | {r['snapshot_in_run_ms']:.1f} | "
                     f"{r['overhead_ms']:.1f} | {r['writer_stall_ms']:.1f} | {r['run_ms']:.1f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3, help="runs per cell (median reported)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: the benchmark mounts loop filesystems and freezes them")
    rows = []
    with tempfile.TemporaryDirectory(prefix="snapbench-") as tmp, \
            Azurite(location=os.path.join(tmp, "azurite")) as azurite, \
            LoopFilesystems(Path(tmp)) as loops:
        filesystems = [loops.make("ext4" if i % 2 == 0 else "xfs") for i in range(8)]
        writers = [Writer(os.path.join(fs.mountpoint, "w.bin")) for fs in filesystems]
        try:
            time.sleep(0.5)
            for n_fs in (1, 4, 8):
                for n_disks in (1, 4, 8):
                    mounts = [fs.mountpoint for fs in filesystems[:n_fs]]
                    rows.append(measure(azurite, mounts, writers[:n_fs], n_disks, args.runs,
                                        Path(tmp)))
        finally:
            for writer in writers:
                writer.stop()
    print(json.dumps(rows, indent=2) if args.json else table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
