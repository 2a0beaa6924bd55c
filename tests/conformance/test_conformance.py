"""Every request the seed documents show, through the packaged handler and the fake agent.

Each row is a corpus case (tests/conformance/corpus.json, drawn from the seeds), the
substitutions it needs here (shown in the test id), and the outcome it must reach: the real
work done (code 0; a snapshot's success is the backup service's 1), or the code whose message
names what to change. No case may end in "unknown field" or in the internal error code 1.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, FrozenSet, NamedTuple, Tuple
from urllib.parse import urlsplit

import pytest

from devtools.pathlab import SERVER
from tests.conformance.extract import CORPUS
from tests.conformance.lanes import CaptureLab, Lane, SnapshotLab
from tests.conformance.substitute import (
    ADDRESS,
    BLOBS,
    FILE,
    NOW,
    PUBLIC_OBJECT,
    SHORT_LIMIT,
    STORAGE,
    TABLE,
    TIME,
    Here,
    capture_settings,
    check_settings,
    snapshot_settings,
)
from tests.conformance.traffic import ALL, OTHER, flows_in, send_flows
from tests.snapshot.conftest import make_disks

pytestmark = pytest.mark.root
CASES = {case["id"]: case for case in json.loads(CORPUS.read_text("utf-8"))["cases"]}


class KnownGap(AssertionError):
    """The one failure a row's known defect causes; any other failure still fails the test."""


class Row(NamedTuple):
    case: str                             # the corpus id: <seed>:<line>[ variant]
    steps: Tuple[str, ...] = ()           # substitutions, in the order applied
    code: int = 0                         # 0: the work is done; else the status's code
    says: Tuple[str, ...] = ()            # what its message must name (field, what to change)
    flows: FrozenSet[str] = frozenset()   # a capture's pcap holds exactly these flows
    other: bool = False                   # ... and may hold ARP/ICMP (no port or protocol)
    gap: str = ""                         # a known defect: the row is a strict xfail until fixed


WINDOWS = ("storageLocation.filePath", "is a Windows path", "on Linux the file must be under")
UDP = frozenset(label for label in ALL if label.startswith("udp"))
CAPTURE = [
    Row("000:136[0]", (STORAGE,), 106, WINDOWS),
    Row("000:136[1]", (STORAGE, FILE, TIME), flows=ALL, other=True),
    Row("000:226", (), 106, WINDOWS),
    Row("000:226 localPort=80", (FILE, TIME), flows=frozenset({"udp 40001>80",
                                                                "tcp 40006>80"})),
    Row("000:226 localPort=80-120", (FILE, TIME), flows=frozenset({
        "udp 40001>80", "udp 40002>100", "tcp 40006>80"})),
    Row("000:226 remotePort=80", (FILE, TIME), flows=frozenset({"udp 80>6001"})),
    Row("000:226 remotePort=80-120", (FILE, TIME), flows=frozenset({"udp 80>6001",
                                                                     "udp 100>6002"})),
    Row("000:226 protocol=TCP", (FILE, TIME), flows=ALL - UDP),
    Row("000:226 protocol=UDP", (FILE, TIME), flows=UDP),
    Row("000:226 protocol=Any", (FILE, TIME), flows=ALL, other=True),
    Row("000:226 targetUri=example", (FILE, TIME), flows=ALL, other=True),
    Row("000:226 storageId=example", (FILE, TIME), flows=ALL, other=True),
    Row("000:226 storagePath=example", (STORAGE, FILE, TIME), flows=ALL, other=True),
    Row("000:226 localFilePath=example", (), 106, WINDOWS),
]
# The REST sequence as written: start (60 s), stop, delete; the one start not shortened.
SEQUENCE = (Row("000:226", (FILE,), flows=ALL, other=True),
            Row("000:278", (), flows=ALL, other=True),
            Row("000:290"))
RESOURCE_ID = ("destination.address", "set destination.address")
CHECK = [Row(f"{seed}:{line}", (ADDRESS,)) if line not in (125, 88) else
         Row(f"{seed}:{line}", (), 218, RESOURCE_ID)
         for seed, lines in (("001", (125, 241, 337, 424)), ("002", (88, 204, 300, 387)))
         for line in lines]
SNAPSHOT = [
    Row("003:32", (), 11, ("commandStartTimeUTCTicks", "objectStr", "logsBlobUri",
                           "statusBlobUri")),
    Row("003:32", (TABLE, BLOBS), 11, ("public objectStr", "backupMetadata")),
    Row("003:32", (TABLE, BLOBS, PUBLIC_OBJECT), 402, ("commandStartTimeUTCTicks",
                                                        "too late")),
    Row("003:32", (TABLE, BLOBS, PUBLIC_OBJECT, NOW)),
]
OUT_OF_SCOPE = ("004:150", "004:246")


def row_id(row: Row) -> str:
    steps = list(row.steps) or ["verbatim"]
    if ADDRESS in steps:
        address = CASES[row.case]["body"]["destination"]["address"]
        steps[steps.index(ADDRESS)] = f"{urlsplit(address).hostname or address}->{SERVER}"
    return f"{row.case} [{', '.join(steps)}]"


def params(rows: Any) -> Any:
    return [pytest.param(row, id=row_id(row), marks=[pytest.mark.xfail(
        strict=True, raises=KnownGap, reason=row.gap)] if row.gap else []) for row in rows]


def test_the_table_covers_every_case_of_the_corpus() -> None:
    tabled = {row.case for row in (*CAPTURE, *SEQUENCE, *CHECK, *SNAPSHOT)}
    assert tabled | set(OUT_OF_SCOPE) == set(CASES), "every extracted case has an outcome"
    for case in OUT_OF_SCOPE:
        assert CASES[case]["kind"] == "out-of-scope" and CASES[case]["reason"], case


# -- shared assertions -------------------------------------------------------------------
def assert_specific(status: Dict[str, Any]) -> None:
    messages = [status["formattedMessage"]["message"]] + [
        sub["formattedMessage"]["message"] for sub in status.get("substatus") or []]
    assert not any("unknown field" in message for message in messages), messages
    assert not (status["status"] == "error" and status["code"] == 1), f"code 1: {status}"


def assert_coded(lane: Lane, seq: int, returncode: int, row: Row) -> None:
    status = lane.status(seq)
    message = status["formattedMessage"]["message"]
    assert (status["status"], status["code"]) == ("error", row.code), said(status)
    assert returncode != 0, "enable exits non-zero when its status is an error"
    for fragment in row.says:
        assert fragment in message, f"{fragment!r} missing from {message!r}"
    assert_specific(status)


def said(status: Dict[str, Any]) -> str:
    return f"{status['status']} {status['code']}: {status['formattedMessage']['message']}"


def blob_of(azurite: Any, url: str) -> bytes:
    container, blob = urlsplit(url).path.split("/", 3)[2:]
    data: bytes = azurite.read_blob(container, blob)
    return data


# -- packetCapture -----------------------------------------------------------------------
def check_capture(done: Dict[str, Any], row: Row, public: Dict[str, Any], azurite: Any) -> None:
    local = Path(done["localPath"]).read_bytes()
    flows, count = flows_in(local)
    assert count == done["packetsCaptured"] > 0, f"the status counts the file's packets: {done}"
    assert row.flows <= flows, f"flows captured {sorted(flows)}"
    if flows - {OTHER} != row.flows:
        raise (KnownGap if row.gap else AssertionError)(
            f"flows captured {sorted(flows)}, not only {sorted(row.flows)}")
    assert row.other or OTHER not in flows, f"packets of no flow in {sorted(flows)}"
    fields = public["packetCapture"].get("properties", public["packetCapture"])
    target = fields.get("target", "").strip()
    assert done.get("target") == (target or None), "the resource's target is echoed"
    storage = fields.get("storageLocation", {}).get("storagePath")
    if storage:
        assert done["uploadedUrl"] == storage, done
        assert blob_of(azurite, storage) == local, "the blob is the local file, uploaded"


def run_capture(lab: CaptureLab, row: Row, azurite: Any) -> Dict[str, Any]:
    """Enable the row's settings; a start that must work runs under traffic until its time
    limit: its querystatus (or {} for a coded row, after checking its code)."""
    lane = lab.lane
    public, protected = capture_settings(CASES[row.case], row.steps, Here(
        azurite, capture_root=lab.root))
    name = public["packetCapture"]["name"]
    seq, run = lane.enable(public, protected or None)
    if row.code:
        assert_coded(lane, seq, run.returncode, row)
        return {}
    assert run.returncode == 0, said(lane.status(seq))
    lane.wait_capture(seq, name, ("Running",))
    send_flows(lab.peer)
    lane.wait_worker(seq, name, timeout=SHORT_LIMIT + 60)
    done = lane.wait_capture(seq, name, ("Stopped", "Error"), timeout=10,
                             need=("uploadedUrl",) if STORAGE in row.steps else ())
    assert (done["packetCaptureStatus"], done["stopReason"]) == ("Stopped", "TimeExceeded"), done
    assert_specific(lane.status(seq))
    check_capture(done, row, public, azurite)
    return done


@pytest.mark.parametrize("row", params(CAPTURE))
def test_packet_capture_case(row: Row, capture_lab: CaptureLab, azurite: Any) -> None:
    run_capture(capture_lab, row, azurite)


def test_packet_capture_rest_sequence_start_stop_delete(capture_lab: CaptureLab,
                                                        azurite: Any) -> None:
    """000:226 as written (60 s, the Linux path), stopped by 000:278, deleted by 000:290."""
    lane, (start, stop, delete) = capture_lab.lane, SEQUENCE
    here = Here(azurite, capture_root=capture_lab.root)
    public, _ = capture_settings(CASES[start.case], start.steps, here)
    name = public["packetCapture"]["name"]
    seq, run = lane.enable(public)
    assert run.returncode == 0, run.output
    lane.wait_capture(seq, name, ("Running",))
    send_flows(capture_lab.peer)
    stop_settings, _ = capture_settings(CASES[stop.case], stop.steps, here)
    assert stop_settings["packetCapture"] == {"name": name, "action": "stop"}
    seq, run = lane.enable(stop_settings)
    assert run.returncode == 0 and lane.wait_terminal(seq)["status"] == "success", run.output
    done = lane.substatus(seq, name)
    assert (done["packetCaptureStatus"], done["stopReason"]) == ("Stopped",
                                                                 "StoppedByRequest"), done
    check_capture(done, stop, public, azurite)
    delete_settings, _ = capture_settings(CASES[delete.case], delete.steps, here)
    assert delete_settings["packetCapture"] == {"name": name, "action": "delete"}
    seq, run = lane.enable(delete_settings)
    status = lane.status(seq)
    assert run.returncode == 0 and status["status"] == "success", status
    assert not Path(done["localPath"]).exists(), f"delete removes {done['localPath']}"
    assert lane.substatus(seq, name) == {}, "a deleted capture leaves the status"
    assert_specific(status)


def test_delete_leaves_the_file_of_another_capture_with_the_same_path(capture_lab: CaptureLab,
                                                                      azurite: Any) -> None:
    """000:136 lists two captures writing one filePath (c:\\temp\\packetcapture.cap); each
    start gets its own file (`~2`), and deleting one capture must not take another's."""
    seventh = run_capture(capture_lab, CAPTURE[1], azurite)
    fifth = run_capture(capture_lab, Row("000:226", (FILE, TIME), flows=ALL, other=True),
                        azurite)
    seq, run = capture_lab.lane.enable(capture_settings(CASES["000:290"], (), Here(
        azurite, capture_root=capture_lab.root))[0])
    assert run.returncode == 0, run.output
    assert not Path(fifth["localPath"]).exists(), "TestPacketCapture5's file is deleted"
    assert Path(seventh["localPath"]).exists(), \
        f"TestPacketCapture7's {seventh['localPath']} was deleted with TestPacketCapture5's"


# -- connectivityCheck -------------------------------------------------------------------
@pytest.mark.parametrize("row", params(CHECK))
def test_connectivity_check_case(row: Row, check_lane: Lane) -> None:
    public, _ = check_settings(CASES[row.case], row.steps, Here(None, server=SERVER))
    seq, run = check_lane.enable(public)
    if row.code:
        return assert_coded(check_lane, seq, run.returncode, row)
    assert run.returncode == 0, said(check_lane.status(seq))
    status = check_lane.wait_terminal(seq, timeout=90)
    assert (status["status"], status["code"]) == ("success", 0), status
    answer = json.loads(status["substatus"][0]["formattedMessage"]["message"])
    assert answer["connectionStatus"] == "Reachable", answer
    assert (answer["probesSent"], answer["probesFailed"]) == (10, 0), answer
    assert answer["hops"][-1]["address"] == SERVER, answer["hops"]
    assert_specific(status)


# -- VMSnapshot ----------------------------------------------------------------------------
@pytest.mark.parametrize("row", params(SNAPSHOT))
def test_vmsnapshot_case(row: Row, snapshot_lab: SnapshotLab, azurite: Any) -> None:
    lane = snapshot_lab.lane
    public, protected = snapshot_settings(CASES[row.case], row.steps, Here(
        azurite, make_disks=lambda count: make_disks(azurite, count)))
    seq, run = lane.enable(public, protected)
    if row.code:
        return assert_coded(lane, seq, run.returncode, row)
    assert run.returncode == 0, said(lane.status(seq))
    status = lane.wait_terminal(seq, timeout=120)
    assert (status["status"], status["code"]) == ("success", 1), status
    blob = json.loads(blob_of(azurite, protected["statusBlobUri"]))[0]["status"]
    assert (blob["taskId"], blob["snapshotConsistency"]) == (
        public["taskId"], "fileSystemConsistent"), blob
    info = blob["snapshotInfo"]
    assert len(info) == 5 and all(d["isSuccessful"] and "snapshot=" in d["snapshotUri"]
                                  for d in info), info
    log = blob_of(azurite, protected["logsBlobUri"]).decode()
    assert "froze" in log and snapshot_lab.mount in log, log[-2000:]
    assert_specific(status)
