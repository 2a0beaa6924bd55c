"""A ring whose worker died mid-write: its newest file ends in half a record (libpcap's
stdio buffer flushes whenever it fills). The recovery sends it cut after its last complete
record - a valid pcap - not as it is."""
from __future__ import annotations

from capture_engine.naming import ring_path
from capture_engine.pcapfile import file_header
from capture_engine.recovery import recover_uploads
from capture_engine.settings import CaptureRequest, RingSettings
from capture_engine.streamstate import Journal, StreamRecord
from plumbing.blobstore import BlobStore
from tests.capture_engine.streamkit import records
from tests.hunt5.test_stream_crashes import tshark_ok


def test_the_newest_ring_file_is_cut_after_its_last_record(tmp_path, azurite):
    container, token = azurite.container_sas_uri("ringtail").split("?", 1)
    base = str(tmp_path / "r.cap")
    request = CaptureRequest(name="tail", storage_path=f"{container}/vm/r.cap", local_path=base,
                             capture_root=str(tmp_path), ring=RingSettings(3, 100_000))
    whole = file_header(65535) + records(0, 5)
    with open(ring_path(base, 1), "wb") as out:
        out.write(whole)
    with open(ring_path(base, 2), "wb") as out:
        out.write(whole + records(5, 1)[:300])  # the worker died writing this record
    Journal(str(tmp_path)).save(StreamRecord("tail", base, True, False, uploaded_seq=0,
                                             storage=f"{container}/vm/r.cap"))
    recovered = recover_uploads(request, BlobStore(), token)
    assert recovered.error is None, recovered
    stored = azurite.read_blob("ringtail", "vm/r_00002.cap")
    assert tshark_ok(stored) and stored == whole, \
        f"the newest file went up as it was: {len(stored)} bytes, {len(whole)} complete"
