"""The main job, end to end: install the packaged extension the way the agent does, start a
real packet capture through the handler in a lab namespace, and upload it to blob storage
(an embedded Azurite by default, or a real SAS URL with --sas-url)."""
from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

from devtools.azurite import Azurite
from devtools.fabric import TenantCertificate
from devtools.fakeagent import FakeAgent
from devtools.netns import Topology, veth

ROOT = Path(__file__).resolve().parent.parent
VM, PEER = "10.199.70.1", "10.199.70.2"
TRAFFIC = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
deadline = time.monotonic() + float(sys.argv[2])
sent = 0
while time.monotonic() < deadline and sent < 20000:
    s.sendto(b"demo-%d" % sent, (sys.argv[1], 443 if sent % 2 else 53))
    sent += 1
    time.sleep(0.001)
print(sent)
"""


def build_zip() -> Path:
    done = subprocess.run([sys.executable, str(ROOT / "packaging" / "build.py")], cwd=ROOT,
                          capture_output=True, text=True, timeout=900, check=True)
    return Path(done.stdout.split()[0])


def run(seconds: int, sas_url: Optional[str], work: Path) -> int:
    zip_path = build_zip()
    print(f"package:   {zip_path}")
    lib_dir = work / "waagent"
    agent = FakeAgent(lib_dir=lib_dir, log_root=work / "log",
                      certificate=TenantCertificate.create(lib_dir))
    with Topology("demo") as topo, Azurite(location=str(work / "azurite")) as azurite:
        vm, peer = topo.namespace("vm"), topo.namespace("peer")
        veth(vm, "eth0", [f"{VM}/24"], peer, "eth0", [f"{PEER}/24"])
        url = sas_url or azurite.blob_sas_uri("captures", "demo/packetcapture.cap")
        storage_path, token = url.split("?", 1)
        (work / "captures").mkdir(exist_ok=True)
        agent.extra_env.update(PACKET_CAPTURE_ROOT=str(work / "captures"),
                               PACKET_CAPTURE_NETNS=vm.name)
        ext_dir = agent.fresh_install(zip_path, "1.0.0")
        assert agent.run(ext_dir, "install").returncode == 0
        settings = {"commandToExecute": "packetCapture", "packetCapture": {
            "name": "demo", "action": "start", "bytesToCapturePerPacket": 0,
            "totalBytesPerSession": 1073741824, "timeLimitInSeconds": seconds,
            "filters": [{"protocol": "UDP", "localPort": "443"}],  # the VM's own port
            "storageLocation": {"storagePath": storage_path,
                                "filePath": str(work / "captures" / "demo.cap")}}}
        agent.write_settings(ext_dir, 1, settings, {"storageSasToken": token}, cipher="aes256")
        enable = agent.run(ext_dir, "enable", 1)
        print(f"enable:    exit {enable.returncode} in {enable.duration:.2f}s "
              f"(protectedSettings encrypted with openssl cms -aes256)")
        _wait_for(agent, ext_dir, ("Running",), 30)
        sent = int(peer.run(["python3", "-c", TRAFFIC, VM, str(max(1, seconds - 2))],
                            timeout=seconds + 30).stdout.strip())
        print(f"traffic:   {sent} UDP datagrams from the peer, {sent // 2} of them to port 443 "
              f"(the filter)")
        final = _wait_for(agent, ext_dir, ("Stopped", "Error"), seconds + 120)
        print("status:    " + json.dumps(final, indent=2).replace("\n", "\n           "))
        captured = final.get("packetsCaptured")
        if not sas_url:
            data = azurite.read_blob("captures", "demo/packetcapture.cap")
            captured = _count(data)
            print(f"blob:      {storage_path} ({len(data)} bytes, {captured} packets)")
        print(f"files:     {work}")
        if final.get("packetCaptureStatus") != "Stopped" or captured != sent // 2:
            print(f"demo: FAILED - {captured} packets captured of the {sent // 2} sent to "
                  "port 443", file=sys.stderr)
            return 1
        return 0


def _wait_for(agent: FakeAgent, ext_dir: Path, states, timeout: float) -> dict:
    """Poll the status file as the agent does until the session reaches one of `states`."""
    deadline, found = time.monotonic() + timeout, {}
    while time.monotonic() < deadline:
        status = agent.status(ext_dir, 1) or {}
        for sub in status.get("substatus") or []:
            found = json.loads(sub["formattedMessage"]["message"])
        final = found.get("uploadedUrl") or found.get("errorMessage") or "Running" in states
        if found.get("packetCaptureStatus") in states and final:
            return found
        time.sleep(0.2)
    raise SystemExit(f"demo: the capture did not reach {'/'.join(states)}: {found}")


def _count(data: bytes) -> int:
    import dpkt

    return sum(1 for _ in dpkt.pcap.Reader(io.BytesIO(data)))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10, help="capture time limit")
    parser.add_argument("--sas-url", help="upload to this blob SAS URL instead of Azurite")
    parser.add_argument("--workdir", help="keep the run's files here (default: a temp dir)")
    args = parser.parse_args(argv)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="extension-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    return run(args.seconds, args.sas_url, work)


if __name__ == "__main__":
    sys.exit(main())
