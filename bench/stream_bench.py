"""Streaming benchmark: captures streamed to Azurite while they run, next to a plain SDK upload.

Run as root: `.venv/bin/python bench/stream_bench.py` (about 2.5 minutes). Two namespaces and a
veth pair; the paced C sender (bench/sender.c) offers 1,250-byte UDP payloads at ~50, 100, 200
and 400 Mbit/s of frames; a ring capture (10 files x 20 MB, run_capture in the capture
namespace, the handler's default BlobStore) streams each closed file to the bench's own
Azurite. Measured: each file's lag from its close to its blob, the files waiting at any
moment, drops, the final pass.
Then the ring's files are uploaded again with `BlobClient.upload_blob` (same process, idle) as
the reference, and a single-file capture streams at ~100 Mbit/s. Prints Markdown tables for
docs/performance.md and writes bench/results/stream.json.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from capture_engine.naming import ring_seq  # noqa: E402
from capture_engine.result import CaptureResult  # noqa: E402
from capture_engine.session import run_capture  # noqa: E402
from capture_engine.settings import CaptureRequest, parse_capture_settings  # noqa: E402
from devtools.azurite import Azurite  # noqa: E402
from devtools.netns import Topology, veth  # noqa: E402
from plumbing.blobstore import BlobStore, ProgressHook  # noqa: E402

SENDER_IP, CAPTURE_IP, PORT, PAYLOAD = "10.199.111.1", "10.199.111.2", 9911, 1250
FRAME = PAYLOAD + 42  # Ethernet, IPv4 and UDP headers: 1,292 bytes on the wire
RATES = [5_000, 10_000, 20_000, 40_000]  # ~52, 103, 207 and 413 Mbit/s of frames
SINGLE_RATE = 10_000
FILE_BYTES, FILE_COUNT = 20_000_000, 10
CONTAINER, MB = "stream", 1e6
Call = Tuple[str, str, float, float, int]  # what, file or block id, start, end, bytes


class TimedStore(BlobStore):
    """The handler's default BlobStore with every call timed: the streamer's busy time."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: List[Call] = []  # shared with until()'s copies (a shallow copy)

    def upload_file(self, uri: str, path: str, progress: Optional[ProgressHook] = None) -> int:
        start = time.monotonic()
        size = super().upload_file(uri, path, progress)
        self.calls.append(("upload", os.path.basename(path), start, time.monotonic(), size))
        return size

    def stage_block(self, uri: str, block_id: str, data: bytes) -> None:
        start = time.monotonic()
        super().stage_block(uri, block_id, data)
        self.calls.append(("stage", block_id, start, time.monotonic(), len(data)))

    def commit_block_list(self, uri: str, block_ids: Sequence[str],
                          content_type: str = "application/octet-stream") -> None:
        start = time.monotonic()
        super().commit_block_list(uri, block_ids, content_type)
        self.calls.append(("commit", str(len(block_ids)), start, time.monotonic(), 0))


class RingWatch:
    """When each ring file closed: the moment the next one appeared (the folder polled every
    20 ms; rotation opens the next file right after closing one)."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.opened: Dict[int, float] = {}  # ring file number -> when it first appeared
        self.halt = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.halt.is_set():
            now = time.monotonic()
            for name in os.listdir(self.folder):
                seq = ring_seq(name) if name.endswith(".cap") else None
                if seq is not None:
                    self.opened.setdefault(seq, now)
            self.halt.wait(0.02)

    def closed(self) -> Dict[int, float]:
        self.halt.set()
        self.thread.join(5)
        return {seq - 1: when for seq, when in self.opened.items() if seq > 1}


class Session:
    """run_capture in a thread, every progress report kept with its time."""

    def __init__(self, request: CaptureRequest, netns: str, store: TimedStore) -> None:
        self.stop, self.ready = threading.Event(), threading.Event()
        self.reports: List[Tuple[float, Dict[str, Any]]] = []
        self.result: Optional[CaptureResult] = None
        self.stopped = self.ended = 0.0
        self.thread = threading.Thread(target=self._run, args=(request, netns, store),
                                       daemon=True)
        self.thread.start()
        if not self.ready.wait(30):
            raise RuntimeError("the capture did not start")

    def _run(self, request: CaptureRequest, netns: str, store: TimedStore) -> None:
        self.result = run_capture(request, blob_store=store, stop_event=self.stop,
                                  on_progress=self._progress, netns=netns,
                                  progress_interval=0.5)
        self.ended = time.monotonic()
        self.ready.set()

    def _progress(self, status: Dict[str, Any]) -> None:
        self.reports.append((time.monotonic(), status))
        if status["packetCaptureStatus"] != "NotStarted":
            self.ready.set()

    def finish(self) -> Dict[str, Any]:
        self.stopped = time.monotonic()
        self.stop.set()
        self.thread.join(600)
        if self.result is None:
            raise RuntimeError("the capture did not end within 600 s")
        return self.result.querystatus()


class Lab:
    """Sender and capture namespaces joined by a veth pair, a sink so no ICMP comes back."""

    def __init__(self, topo: Topology, work: str) -> None:
        self.snd, self.cap = topo.namespace("snd"), topo.namespace("cap")
        veth(self.snd, "snd0", [f"{SENDER_IP}/24"], self.cap, "cap0", [f"{CAPTURE_IP}/24"])
        self.sender = os.path.join(work, "sender")
        subprocess.run(["gcc", "-O2", "-o", self.sender, os.path.join(HERE, "sender.c")],
                       check=True)
        self.sink = self.cap.popen([sys.executable, "-c", "import socket,time; s=socket.socket("
                                    "socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', "
                                    f"{PORT})); time.sleep(900)"])

    def send(self, pps: int, seconds: float) -> int:
        done = self.snd.run([self.sender, CAPTURE_IP, str(PORT), str(pps), str(seconds),
                             str(PAYLOAD)], timeout=seconds + 30)
        return int(done.stdout)

    def close(self) -> None:
        os.killpg(self.sink.pid, signal.SIGKILL)
        self.sink.wait()


def settings(name: str, azurite: Azurite, ring: bool) -> Dict[str, Any]:
    location = {"storagePath": f"{azurite.account_url}/{CONTAINER}/{name}/{name}.cap"}
    extra: Dict[str, Any] = {}
    if ring:
        location["localPath"] = f"{name}.cap"  # kept after the run: the reference uploads it
        extra = {"continuousCapture": True,
                 "captureSettings": {"fileCount": FILE_COUNT, "fileSizeInBytes": FILE_BYTES}}
    return {"name": name, "interfaces": ["cap0"], "storageLocation": location,
            "filters": [{"protocol": "UDP", "localPort": str(PORT)}], **extra}


def cpu_now() -> float:
    """CPU seconds of this process so far, every thread: capture, streamer, SDK, the bench."""
    times = os.times()
    return times.user + times.system


def captured(status: Dict[str, Any], sent: int, pps: int) -> Dict[str, Any]:
    return {"pps": pps, "mbit": round(pps * FRAME * 8 / MB, 1), "sent": sent,
            "captured": status["packetsCaptured"], "kernel_drops": status["packetsDropped"],
            "bytes": status["bytesWritten"], "status": status["packetCaptureStatus"],
            "error": status["errorCode"]}


def run_ring(lab: Lab, azurite: Azurite, token: str, work: str, pps: int,
             seconds: float) -> Dict[str, Any]:
    name = f"ring{pps}"
    root = os.path.join(work, name)
    os.mkdir(root)
    request = parse_capture_settings(settings(name, azurite, True), capture_root=root,
                                     sas_token=token)
    store, watch, load, cpu = TimedStore(), RingWatch(root), os.getloadavg()[0], cpu_now()
    session = Session(request, lab.cap.name, store)
    watch.thread.start()
    traffic = (time.monotonic(), 0.0)
    sent = lab.send(pps, seconds)
    traffic = (traffic[0], time.monotonic())
    time.sleep(1.0)  # the last datagrams reach the capture
    status = session.finish()
    row = captured(status, sent, pps)
    row["cpu_s"] = round(cpu_now() - cpu, 2)
    row.update(ring_figures(store.calls, watch.closed(), traffic, session))
    row["dropped_files"] = status["streaming"]["fileStates"]["dropped"]
    row["blobs"] = blob_sizes(azurite, name)
    row["load"] = [round(load, 2), round(os.getloadavg()[0], 2)]
    row["reference"] = reference(azurite, token, root, name)
    return row


def ring_figures(calls: List[Call], closed: Dict[int, float], traffic: Tuple[float, float],
                 session: Session) -> Dict[str, Any]:
    """Lag close -> blob per file, files waiting (closed, not in storage yet) at any moment,
    the streamer's busy share of the traffic, and the final pass."""
    uploads = {ring_seq(n) or 0: (s, e, b) for what, n, s, e, b in calls if what == "upload"}
    if uploads:
        closed[max(uploads)] = session.stopped  # the last file closes when the capture stops
    lags = sorted(round(uploads[seq][1] - when, 2) for seq, when in closed.items()
                  if seq in uploads and when < session.stopped)
    events = sorted([(when, 1) for when in closed.values()] +
                    [(end, -1) for _, end, _ in uploads.values()])
    waiting = most = 0
    at_end: Optional[int] = None
    for when, step in events:
        if at_end is None and when > traffic[1]:
            at_end = waiting
        waiting += step
        most = max(most, waiting)
    busy = sum(max(0.0, min(e, traffic[1]) - max(s, traffic[0])) for s, e, _ in uploads.values())
    spent = sum(e - s for s, e, _ in uploads.values())
    total = sum(b for _, _, b in uploads.values())
    return {"files_closed": len(closed), "files_uploaded": len(uploads), "uploaded_bytes": total,
            "lags": lags, "lag_median": lags[len(lags) // 2] if lags else None,
            "lag_max": lags[-1] if lags else None, "max_waiting": most,
            "waiting_at_traffic_end": at_end or 0,
            "busy_share": round(busy / (traffic[1] - traffic[0]), 3),
            "stream_mbps": round(total / MB / spent, 1) if spent else None,
            "final_pass_s": round(session.ended - session.stopped, 2),
            "final_pass_files": sum(1 for s, e, _ in uploads.values() if e > session.stopped)}


def blob_sizes(azurite: Azurite, name: str) -> Dict[str, int]:
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    container = service.get_container_client(CONTAINER)
    blobs = list(container.list_blobs(name_starts_with=f"{name}/"))
    return {"count": len(blobs), "bytes": sum(int(b.size or 0) for b in blobs)}


def reference(azurite: Azurite, token: str, root: str, name: str) -> Dict[str, Any]:
    """The ring's files still on disk, uploaded again in this process with the store idle:
    with the SDK directly (upload_blob, sequential, default concurrency), then with our
    BlobStore (what the streamer calls) without a capture running."""
    from azure.storage.blob import BlobClient

    files = sorted(os.path.join(root, n) for n in os.listdir(root) if ring_seq(n) is not None)
    size = sum(os.path.getsize(path) for path in files)
    url = f"{azurite.account_url}/{CONTAINER}/ref-{name}"
    started = time.monotonic()
    for path in files:
        client = BlobClient.from_blob_url(f"{url}/sdk-{os.path.basename(path)}?{token}")
        with open(path, "rb") as data:
            client.upload_blob(data, overwrite=True)
    sdk = time.monotonic() - started
    store, started = BlobStore(), time.monotonic()
    for path in files:
        store.upload_file(f"{url}/ours-{os.path.basename(path)}?{token}", path)
    ours = time.monotonic() - started
    return {"files": len(files), "bytes": size, "sdk_mbps": round(size / MB / sdk, 1),
            "blobstore_idle_mbps": round(size / MB / ours, 1)}


def run_single(lab: Lab, azurite: Azurite, token: str, work: str, pps: int,
               seconds: float) -> Dict[str, Any]:
    """A single file streamed as it grows: committed bytes behind written bytes, blocks."""
    from azure.storage.blob import BlobClient

    root = os.path.join(work, "single")
    os.mkdir(root)
    request = parse_capture_settings(settings("single", azurite, False), capture_root=root,
                                     sas_token=token)
    store, load, cpu = TimedStore(), os.getloadavg()[0], cpu_now()
    session = Session(request, lab.cap.name, store)
    sent = lab.send(pps, seconds)
    time.sleep(1.0)
    status = session.finish()
    row = captured(status, sent, pps)
    row["cpu_s"] = round(cpu_now() - cpu, 2)
    lags = [r["bytesWritten"] - (r.get("streaming") or {}).get("committedBytes", 0)
            for when, r in session.reports if when < session.stopped]  # every 0.5 s
    commits = [c for c in store.calls if c[0] == "commit"]
    client = BlobClient.from_blob_url(
        f"{azurite.account_url}/{CONTAINER}/single/single.cap?{token}")
    blocks, _ = client.get_block_list("committed")
    rate = pps * (FRAME + 16)  # bytes a second into the file (16-byte record headers)
    row.update({
        "lag_end_bytes": lags[-1] if lags else None,
        "lag_end_s": round(lags[-1] / rate, 2) if lags else None,
        "lag_max_bytes": max(lags) if lags else None, "commits": len(commits),
        "lag_median_bytes": sorted(lags)[len(lags) // 2] if lags else None,
        "committed_blocks": len(blocks), "blob_bytes": blob_sizes(azurite, "single")["bytes"],
        "staged_bytes": sum(c[4] for c in store.calls if c[0] == "stage"),
        "busy_s": round(sum(c[3] - c[2] for c in store.calls), 2),
        "final_pass_s": round(session.ended - session.stopped, 2),
        "load": [round(load, 2), round(os.getloadavg()[0], 2)]})
    return row


def ring_table(rows: List[Dict[str, Any]], seconds: float) -> str:
    lines = [f"| offered ({seconds:g} s) | sent / captured (kernel drops) | MB captured, files, "
             "all in storage "
             "| lag close → blob, median / max | files waiting, most / at traffic end "
             "| files dropped | streamer busy | streaming MB/s | BlobStore alone MB/s "
             "| SDK upload_blob MB/s | CPU s | final pass | load avg |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ref = r["reference"]
        lines.append(
            f"| {r['mbit']:g} Mbit/s ({r['pps']:,} pps) | {r['sent']:,} / {r['captured']:,} "
            f"({r['kernel_drops']:,}) | {r['bytes'] / MB:,.0f}, {r['files_closed']}, "
            f"{'yes' if complete(r) else 'NO'} "
            f"| {r['lag_median']} / {r['lag_max']} s | {r['max_waiting']} / "
            f"{r['waiting_at_traffic_end']} | {r['dropped_files']} | {r['busy_share']:.0%} "
            f"| {r['stream_mbps']} | {ref['blobstore_idle_mbps']} | {ref['sdk_mbps']} "
            f"| {r['cpu_s']} | {r['final_pass_s']} s ({r['final_pass_files']} file) "
            f"| {r['load'][0]}–{r['load'][1]} |")
    return "\n".join(lines)


def complete(row: Dict[str, Any]) -> bool:
    """Every file closed is in storage, byte for byte, once."""
    return bool(row["blobs"] == {"count": row["files_closed"], "bytes": row["bytes"]} and
                row["files_uploaded"] == row["files_closed"] and row["status"] == "Stopped")


def single_table(row: Dict[str, Any], seconds: float) -> str:
    return "\n".join([
        f"| offered ({seconds:g} s) | sent / captured | MB written / in the blob | commits / "
        "committed blocks | MB staged | committed behind written: median / most / last "
        "report | storage calls busy | CPU s | final pass | load avg |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| {row['mbit']:g} Mbit/s ({row['pps']:,} pps) | {row['sent']:,} / "
        f"{row['captured']:,} | {row['bytes'] / MB:,.1f} / {row['blob_bytes'] / MB:,.1f} "
        f"| {row['commits']} / {row['committed_blocks']} | {row['staged_bytes'] / MB:,.1f} "
        f"({row['staged_bytes'] / row['bytes']:.2f}x) "
        f"| {row['lag_median_bytes'] / MB:.1f} / {row['lag_max_bytes'] / MB:.1f} / "
        f"{row['lag_end_bytes'] / MB:.1f} MB | {row['busy_s']} s | {row['cpu_s']} "
        f"| {row['final_pass_s']} s "
        f"| {row['load'][0]}–{row['load'][1]} |"])


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="traffic per ring rate")
    parser.add_argument("--rates", type=int, nargs="*", default=RATES, help="pps")
    parser.add_argument("--single-seconds", type=float, default=40.0,
                        help="single-file traffic (0 skips it)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("stream_bench: run as root (namespaces, packet sockets)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="streambench-") as work, Topology("b11") as topo:
        lab = Lab(topo, work)
        azurite = Azurite(location=os.path.join(work, "azurite")).start()
        try:
            token = azurite.container_sas_uri(CONTAINER).split("?", 1)[1]
            rows = [run_ring(lab, azurite, token, work, pps, args.seconds)
                    for pps in args.rates]
            single = run_single(lab, azurite, token, work, SINGLE_RATE, args.single_seconds) \
                if args.single_seconds else None
        finally:
            azurite.stop()
            lab.close()
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "stream.json"), "w") as out:
        json.dump({"ring": rows, "single": single, "seconds": args.seconds,
                   "single_seconds": args.single_seconds}, out, indent=2)
    print(ring_table(rows, args.seconds))
    if single is not None:
        print()
        print(single_table(single, args.single_seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
